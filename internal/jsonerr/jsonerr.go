// Package jsonerr turns the errors of encoding/json into messages a person
// can act on: the line and column of a syntax error, and for a value of the
// wrong type the key and the type it must have, in JSON's words.
//
// It only describes errors: it decodes nothing itself and reads no files.
package jsonerr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// Describe names the line and column of an error that json.Unmarshal
// returned for data, and for a value of the wrong type the key and the type
// it must have. A syntax error is wrapped; other errors are described as
// invalid JSON and wrapped.
func Describe(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := lineCol(data, syn.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %w", line, col, err)
	case errors.As(err, &typ):
		line, _ := lineCol(data, typ.Offset)
		if typ.Field == "" {
			return fmt.Errorf("line %d: the document must be %s, not %s", line, kind(typ.Type), typ.Value)
		}
		return fmt.Errorf("line %d: %q must be %s, not %s", line, typ.Field, kind(typ.Type), typ.Value)
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// lineCol turns the offset of a decoding error (just after the byte at
// fault) into a line and a column, both from 1.
func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 {
		off--
	}
	before := data[:off]
	return bytes.Count(before, []byte("\n")) + 1, int(off) - bytes.LastIndexByte(before, '\n')
}

// kind says in JSON's words what a Go type decodes from.
func kind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Pointer:
		return kind(t.Elem())
	}
	return "an object"
}
