package logwriter

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

// sink records each Write call separately.
type sink struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	s.writes = append(s.writes, string(p))
	return len(p), nil
}

func (s *sink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.writes...)
}

func TestRoutineLinesWaitForTheInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		w := New(s, Options{Interval: 100 * time.Millisecond})
		defer w.Close()
		log := zerolog.New(w)
		for i := range 3 {
			log.Info().Int("n", i).Msg("request")
		}
		if got := s.got(); len(got) != 0 {
			t.Fatalf("written before the interval: %q", got)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		got := s.got()
		if len(got) != 1 || strings.Count(got[0], "\n") != 3 {
			t.Fatalf("after the interval: %q; want the three lines in one write", got)
		}
	})
}

func TestUrgentLinesGoOutAtOnceInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		w := New(s, Options{})
		defer w.Close()
		log := zerolog.New(w)
		log.Info().Msg("first")
		log.Warn().Msg("second")
		got := s.got()
		if len(got) != 2 || !strings.Contains(got[0], "first") || !strings.Contains(got[1], "second") {
			t.Fatalf("writes = %q; want the buffered info line, then the warning", got)
		}
		log.Log().Msg("no level")
		log.Error().Msg("error")
		if got := s.got(); len(got) != 4 {
			t.Fatalf("writes = %q; lines without a level and errors go out at once", got)
		}
	})
}

func TestFullBufferIsWrittenOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		w := New(s, Options{Size: 100})
		defer w.Close()
		line := strings.Repeat("x", 39) + "\n" // 40 bytes
		for range 3 {
			w.WriteLevel(zerolog.InfoLevel, []byte(line))
		}
		got := s.got()
		if len(got) != 1 || got[0] != line+line {
			t.Fatalf("writes = %q; want the first two lines once the third did not fit", got)
		}
		big := strings.Repeat("y", 150) + "\n"
		w.WriteLevel(zerolog.InfoLevel, []byte(big))
		got = s.got()
		if len(got) != 3 || got[1] != line || got[2] != big {
			t.Fatalf("writes = %q; a line larger than the buffer goes out at once, after the buffered one", got)
		}
	})
}

func TestCloseWritesTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		w := New(s, Options{Interval: time.Hour})
		w.WriteLevel(zerolog.InfoLevel, []byte("last words\n"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := s.got(); len(got) != 1 || got[0] != "last words\n" {
			t.Fatalf("after Close: %q", got)
		}
		w.WriteLevel(zerolog.InfoLevel, []byte("after\n"))
		if got := s.got(); len(got) != 2 {
			t.Fatalf("a line after Close was held back: %q", got)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestWriteErrorDropsTheBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{err: errors.New("disk full")}
		w := New(s, Options{})
		w.WriteLevel(zerolog.InfoLevel, []byte("lost\n"))
		if _, err := w.WriteLevel(zerolog.WarnLevel, []byte("warn\n")); err == nil {
			t.Fatal("no error from a failing destination")
		}
		s.mu.Lock()
		s.err = nil
		s.mu.Unlock()
		w.WriteLevel(zerolog.InfoLevel, []byte("kept\n"))
		w.Close()
		if got := s.got(); len(got) != 1 || got[0] != "kept\n" {
			t.Fatalf("writes = %q; want only the line after the error", got)
		}
	})
}

func TestConcurrentWritersKeepLinesWhole(t *testing.T) {
	s := &sink{}
	w := New(s, Options{Size: 512, Interval: time.Millisecond})
	log := zerolog.New(w)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				log.Info().Int("g", g).Int("i", i).Msg("request")
			}
		}()
	}
	wg.Wait()
	w.Close()
	all := strings.Join(s.got(), "")
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines; want 1600", len(lines))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var g, i int
		if _, err := fmt.Sscanf(l, `{"level":"info","g":%d,"i":%d,"message":"request"}`, &g, &i); err != nil {
			t.Fatalf("broken line %q: %v", l, err)
		}
		seen[l] = true
	}
	if len(seen) != 1600 {
		t.Errorf("%d distinct lines; want 1600", len(seen))
	}
}

func BenchmarkAccessLine(b *testing.B) {
	w := New(io.Discard, Options{})
	defer w.Close()
	log := zerolog.New(w)
	b.ReportAllocs()
	for b.Loop() {
		log.Info().Str("route", "author").Str("method", "GET").Int("status", 200).Msg("request")
	}
}
