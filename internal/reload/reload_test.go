package reload

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStampNoticesChanges(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Stat(p)
	if !a.Equal(b) {
		t.Error("same file: stamps differ")
	}
	if err := os.WriteFile(p, []byte("longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := Stat(p)
	if a.Equal(c) {
		t.Error("file grew: stamps equal")
	}
	if a.Equal(nil) {
		t.Error("stamp equals an empty one")
	}
	if _, err := Stat(p, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Stat of a missing file: got nil error")
	}
}

func TestThrottle(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{Interval: 2 * time.Second, Now: func() time.Time { return now }}
	if !th.TryBegin() {
		t.Fatal("first look refused")
	}
	if th.TryBegin() {
		t.Error("a second caller may look while the first does")
	}
	th.End()
	if th.TryBegin() {
		t.Error("looked again within the interval")
	}
	now = now.Add(2 * time.Second)
	if !th.TryBegin() {
		t.Fatal("look after the interval refused")
	}
	th.End()
	th.Begin() // never refused
	th.End()
	th.Reset()
	if th.TryBegin() {
		t.Error("looked right after Reset")
	}
}
