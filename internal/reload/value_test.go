package reload

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// valueSetup is a Value over one file whose content is its value; content
// starting with "bad" fails to read.
type valueSetup struct {
	path   string
	now    time.Time
	mu     sync.Mutex
	events []string
	v      *Value[string]
}

func newValueSetup(t *testing.T, content string) *valueSetup {
	t.Helper()
	s := &valueSetup{path: filepath.Join(t.TempDir(), "f"), now: time.Unix(1_700_000_000, 0)}
	s.write(t, content)
	note := func(e string) { s.mu.Lock(); s.events = append(s.events, e); s.mu.Unlock() }
	v, err := NewValue([]string{s.path}, 2*time.Second, s.clock, func() (string, error) {
		b, err := os.ReadFile(s.path)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(string(b), "bad") {
			return "", errors.New("bad content")
		}
		return string(b), nil
	}, Events[string]{
		Loaded:     func(old, cur string) { note("loaded " + old + "->" + cur) },
		Refused:    func(err error) { note("refused: " + err.Error()) },
		Unreadable: func(error) { note("unreadable") },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.v = v
	return s
}

func (s *valueSetup) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *valueSetup) advance() {
	s.mu.Lock()
	s.now = s.now.Add(2 * time.Second)
	s.mu.Unlock()
}

// write replaces the file by rename, with a content length of its own so
// that the stamp changes whatever the file system's time resolution.
func (s *valueSetup) write(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(s.path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.path+".tmp", s.path); err != nil {
		t.Fatal(err)
	}
}

func (s *valueSetup) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func TestValueNoticesChangesAtMostOncePerInterval(t *testing.T) {
	s := newValueSetup(t, "one")
	s.write(t, "second")
	if got := s.v.Get(); got != "one" {
		t.Fatalf("within the interval Get = %q; want the first reading", got)
	}
	s.advance()
	if got := s.v.Get(); got != "second" {
		t.Fatalf("after the interval Get = %q; want the new content", got)
	}
	if got := s.got(); len(got) != 1 || got[0] != "loaded one->second" {
		t.Errorf("events = %q", got)
	}
}

func TestValueRefusesABrokenFileOnceAndKeepsTheCurrent(t *testing.T) {
	s := newValueSetup(t, "good")
	s.write(t, "bad, a longer file")
	for range 3 {
		s.advance()
		if got := s.v.Get(); got != "good" {
			t.Fatalf("Get = %q; want the current value kept", got)
		}
	}
	if got := s.got(); len(got) != 1 || got[0] != "refused: bad content" {
		t.Fatalf("events = %q; want one refusal", got)
	}
	s.write(t, "fixed again")
	s.advance()
	if got := s.v.Get(); got != "fixed again" {
		t.Fatalf("Get = %q after the fix", got)
	}
}

func TestValueUnreadableReportedOnce(t *testing.T) {
	s := newValueSetup(t, "here")
	if err := os.Remove(s.path); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s.advance()
		if got := s.v.Get(); got != "here" {
			t.Fatalf("Get = %q; want the current value kept", got)
		}
	}
	if got := s.got(); len(got) != 1 || got[0] != "unreadable" {
		t.Fatalf("events = %q; want one", got)
	}
}

func TestValueReloadReadsNow(t *testing.T) {
	s := newValueSetup(t, "one")
	s.write(t, "second")
	if err := s.v.Reload(); err != nil || s.v.Current() != "second" {
		t.Fatalf("Reload: %v, value %q; want the new content at once", err, s.v.Current())
	}
	s.write(t, "bad, and longer")
	if err := s.v.Reload(); err == nil || s.v.Current() != "second" {
		t.Fatalf("Reload of a broken file: %v, value %q; want an error and the value kept", err, s.v.Current())
	}
	// The refused file is not tried again by Get, nor reported again.
	s.advance()
	s.v.Get()
	if got := s.got(); len(got) != 1 {
		t.Errorf("events = %q; want only the first reload's", got)
	}
}

func TestValueFirstReadingError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	_, err := NewValue([]string{path}, time.Second, nil, func() (int, error) {
		_, err := os.ReadFile(path)
		return 0, err
	}, Events[int]{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NewValue = %v; want read's error", err)
	}
}

func TestValueConcurrentGet(t *testing.T) {
	s := newValueSetup(t, "one")
	s.write(t, "second")
	s.advance()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if got := s.v.Get(); got != "one" && got != "second" {
				t.Errorf("Get = %q", got)
			}
		})
	}
	wg.Wait()
	if got := s.got(); len(got) != 1 {
		t.Errorf("events = %q; want one reload for 32 callers", got)
	}
}
