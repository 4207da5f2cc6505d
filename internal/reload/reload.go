// Package reload notices when files that are read in place (API keys, TLS
// certificates and keys) have changed, cheaply enough to be asked on a
// request or handshake path: it looks at the files at most once per
// interval, and only one caller looks at a time while the others go on
// without waiting. Value holds what was read from such files and reads
// them again when they change or on demand (SIGHUP).
package reload

import (
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Stamp is what a set of files looked like when stat'ed: each file's size
// and modification time.
type Stamp []fileStamp

type fileStamp struct {
	size int64
	mod  time.Time
}

// Stat returns the Stamp of paths, in order.
func Stat(paths ...string) (Stamp, error) {
	s := make(Stamp, 0, len(paths))
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		s = append(s, fileStamp{st.Size(), st.ModTime()})
	}
	return s, nil
}

// Equal reports whether s and o describe the same file contents as far as
// size and modification time tell.
func (s Stamp) Equal(o Stamp) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i].size != o[i].size || !s[i].mod.Equal(o[i].mod) {
			return false
		}
	}
	return true
}

// Throttle lets a caller look at files at most once per Interval, one
// caller at a time. The zero value is not usable; set Interval and Now.
type Throttle struct {
	Interval time.Duration
	Now      func() time.Time

	next atomic.Int64 // unix nanoseconds of the next allowed look
	mu   sync.Mutex
}

// TryBegin reports whether it is time to look and nobody else is looking.
// When it returns true the caller must call End once done.
func (t *Throttle) TryBegin() bool {
	now := t.Now()
	if now.UnixNano() < t.next.Load() || !t.mu.TryLock() {
		return false
	}
	t.next.Store(now.Add(t.Interval).UnixNano())
	return true
}

// Reset makes the next look due an Interval from now, for files that were
// just read.
func (t *Throttle) Reset() { t.next.Store(t.Now().Add(t.Interval).UnixNano()) }

// Begin waits until nobody else is looking, for a reload that must happen
// now (SIGHUP). The caller must call End once done.
func (t *Throttle) Begin() { t.mu.Lock() }

// End ends a look started by TryBegin or Begin.
func (t *Throttle) End() { t.mu.Unlock() }
