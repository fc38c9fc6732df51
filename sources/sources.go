// Package sources holds what moat's log sources share: the position a
// source hands over with each line, which the jail engine stores so that a
// restart resumes where the last failure was counted. Each source lives in a
// subpackage (follow: files by path and glob; docker: containers' json-file
// logs found through Docker's data root; journal: the systemd journal). A source delivers lines as they
// are: it must not match them (filters does) nor decide bans (jail does), and
// this package must not import any of moat's other packages.
package sources

// Position identifies how far a file has been read: the path it was found
// at, its inode, and the byte offset just past the last delivered line.
//
// A source that is not a file, the systemd journal, sets Cursor instead:
// Path is then a stable key of the stream (never an absolute path; the
// journal's starts with "journal:"), Cursor is the journal cursor of the
// last delivered entry, and Inode, Offset and Sum are 0. The jail engine
// stores and gives back a cursor position exactly like a file's.
//
// Sum is the CRC-32C of the (up to 64) bytes just before Offset, or 0 if
// unknown. On resume it tells the same file apart from a new file that reused
// the inode number (ext4 reuses a freed inode at once), or from a file
// truncated and rewritten while moat was stopped. Store it with the rest; a
// Position with Sum 0 is trusted on inode and size alone.
type Position struct {
	Path   string `json:"path"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
	Sum    uint32 `json:"sum,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}
