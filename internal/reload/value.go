package reload

import (
	"sync/atomic"
	"time"
)

// Value is something read from files that are changed in place: API keys,
// a certificate and its key. Get looks at the files at most once per
// interval, one caller at a time, and reads them again when their Stamp
// changed; Reload reads them at once. A reading that fails keeps the
// current value. Safe for concurrent use.
type Value[T any] struct {
	paths  []string
	read   func() (T, error)
	events Events[T]
	check  Throttle
	cur    atomic.Pointer[reading[T]]

	// Guarded by check: the stamp of the files last refused, and whether
	// the last look could not stat them, so that each is reported once.
	refused    Stamp
	unreadable bool
}

// Events are told what happens after the first reading; each may be nil.
type Events[T any] struct {
	// Loaded is told of each new reading, with the value it replaces.
	Loaded func(old, cur T)
	// Refused is told why changed files noticed by Get were not taken,
	// once per change.
	Refused func(error)
	// Unreadable is told why Get cannot stat the files, once until it
	// can again.
	Unreadable func(error)
}

type reading[T any] struct {
	v     T
	stamp Stamp
}

// NewValue reads the files of paths with read and returns the Value, or
// read's error. now is the clock of the interval (nil means time.Now).
func NewValue[T any](paths []string, interval time.Duration, now func() time.Time, read func() (T, error), ev Events[T]) (*Value[T], error) {
	if now == nil {
		now = time.Now
	}
	v := &Value[T]{paths: paths, read: read, events: ev, check: Throttle{Interval: interval, Now: now}}
	if _, err := v.load(); err != nil {
		return nil, err
	}
	v.check.Reset()
	return v, nil
}

// Get returns the current value, first reading the files again if a look
// is due, nobody else is looking, and they changed.
func (v *Value[T]) Get() T {
	if v.check.TryBegin() {
		v.look()
		v.check.End()
	}
	return v.Current()
}

// Current returns the current value without looking at the files.
func (v *Value[T]) Current() T { return v.cur.Load().v }

// Reload reads the files now, waiting for a look in progress. On error the
// current value stays.
func (v *Value[T]) Reload() error {
	v.check.Begin()
	defer v.check.End()
	v.check.Reset()
	stamp, err := v.load()
	if err != nil {
		v.refused = stamp
	}
	return err
}

func (v *Value[T]) look() {
	stamp, err := Stat(v.paths...)
	if err != nil {
		if !v.unreadable && v.events.Unreadable != nil {
			v.events.Unreadable(err)
		}
		v.unreadable = true
		return
	}
	v.unreadable = false
	if stamp.Equal(v.cur.Load().stamp) || stamp.Equal(v.refused) {
		return
	}
	if _, err := v.load(); err != nil {
		v.refused = stamp
		if v.events.Refused != nil {
			v.events.Refused(err)
		}
	}
}

// load reads the files. The stamp is taken first, so that a file changed
// while it is read is read again at the next look; the error of a file
// that cannot be stat'ed is read's, which says it better.
func (v *Value[T]) load() (Stamp, error) {
	stamp, _ := Stat(v.paths...)
	val, err := v.read()
	if err != nil {
		return stamp, err
	}
	old := v.cur.Swap(&reading[T]{v: val, stamp: stamp})
	v.refused = nil
	if old != nil && v.events.Loaded != nil {
		v.events.Loaded(old.v, val)
	}
	return stamp, nil
}
