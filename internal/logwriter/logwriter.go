// Package logwriter buffers routine log lines so that a busy proxy does not
// make one write system call per access-log line.
//
// Lines below a level (the access log is at info) are collected in a buffer
// that is written out when it fills and at a fixed interval; a line at or
// above the level, or without one, is written at once together with what
// was buffered before it, so the order of lines is kept and warnings are
// never late. Close writes out the rest. What a crash loses is at most one
// interval of routine lines.
package logwriter

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Defaults for Options.
const (
	DefaultSize     = 64 << 10
	DefaultInterval = 100 * time.Millisecond
)

// urgent is the lowest level written at once.
const urgent = zerolog.WarnLevel

// Options configure a Writer. Zero values take the defaults.
type Options struct {
	// Size is the buffer size in bytes (default 64 KiB).
	Size int
	// Interval is the longest a buffered line waits (default 100 ms).
	Interval time.Duration
}

// Writer is a zerolog.LevelWriter that buffers lines below warn level. It
// is safe for concurrent use.
type Writer struct {
	w io.Writer

	mu     sync.Mutex
	buf    []byte
	closed bool

	stop chan struct{}
	done chan struct{}
}

// New returns a Writer writing to w and starts its flushing goroutine,
// which Close stops.
func New(w io.Writer, o Options) *Writer {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	b := &Writer{
		w:    w,
		buf:  make([]byte, 0, o.Size),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go b.loop(o.Interval)
	return b
}

func (b *Writer) loop(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Write writes p at once, as a line without a level.
func (b *Writer) Write(p []byte) (int, error) {
	return b.WriteLevel(zerolog.NoLevel, p)
}

// WriteLevel buffers p if l is below warn, else writes it at once after
// what was buffered.
func (b *Writer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// zerolog.NoLevel ranks above warn, so lines without a level go at once.
	if !b.closed && l < urgent && len(p) <= cap(b.buf) {
		if len(b.buf)+len(p) > cap(b.buf) {
			if err := b.flushLocked(); err != nil {
				return 0, err
			}
		}
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// flushLocked writes the buffer out. On a write error the buffered lines
// are dropped: keeping them would only grow the next attempt.
func (b *Writer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Close writes out what is buffered and stops the flushing goroutine.
// Lines written after Close go out at once.
func (b *Writer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	err := b.flushLocked()
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	return err
}
