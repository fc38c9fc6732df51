package docker_test

import (
	"context"
	"log/slog"

	"github.com/moatproj/moat/sources/docker"
	"github.com/moatproj/moat/sources/follow"
)

// The wiring a daemon does: watch the selected containers, follow the
// json-file log of each one whose driver moat can read, and decode its lines.
func ExampleWatcher() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sel, err := docker.ParseSelector("label:com.example.role=frontend")
	if err != nil {
		panic(err)
	}
	root := "/var/lib/docker"
	w := &docker.Watcher{Root: root, Selectors: []docker.Selector{sel}, Logger: slog.Default()}
	go w.Run(ctx, func(cs []docker.Container) {
		var paths []string
		for _, c := range cs {
			if docker.DriverProblem(c) == "" {
				paths = append(paths, docker.JSONLogPath(root, c))
			}
		}
		// Restart (or adjust) the followers for these paths. One Decoder per
		// path: it joins the pieces of lines Docker split.
		for _, p := range paths {
			lines := make(chan follow.Line)
			f := follow.New([]string{p}, nil, follow.Options{})
			go f.Run(ctx, lines)
			go func() {
				d := docker.NewDecoder()
				for l := range lines {
					text, t, ok, err := d.Decode([]byte(l.Text))
					if err != nil || !ok {
						continue
					}
					_, _ = text, t // match text; t is the failure time when the text has no date
				}
			}()
		}
	})
}
