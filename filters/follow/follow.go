// Package follow follows log files by path and glob across rotations,
// delivering whole lines exactly once, and resumes from saved positions.
// It must not interpret the lines it delivers.
package follow

// Position identifies how far a file has been read: the path it was found
// at, its inode, and the byte offset just past the last delivered line.
type Position struct {
	Path   string `json:"path"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// Line is one whole line read from a file, without its trailing newline.
// Pos is the position just past this line.
type Line struct {
	Text string
	Pos  Position
}
