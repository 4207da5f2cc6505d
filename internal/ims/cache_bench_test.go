package ims

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchSource hands out a token valid for lifetime from the first call on;
// later calls block until release is closed, so that a refresh stays in
// flight for as long as a benchmark needs.
type benchSource struct {
	now      func() time.Time
	lifetime time.Duration
	once     sync.Once
	release  chan struct{}
}

func (s *benchSource) Token(ctx context.Context) (Token, error) {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		select {
		case <-s.release:
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
	now := s.now()
	return Token{AccessToken: "bench-token", IssuedAt: now, ExpiresAt: now.Add(s.lifetime)}, nil
}

// BenchmarkCacheToken measures Token from all Ps at once: fresh is the
// steady state (an atomic load and a clock read); stale is the window after
// the refresh point while the background refresh is in flight, which must
// not take a lock or allocate either.
func BenchmarkCacheToken(b *testing.B) {
	for _, stale := range []bool{false, true} {
		name := "fresh"
		if stale {
			name = "stale"
		}
		b.Run(name, func(b *testing.B) {
			var clock atomic.Int64 // lock-free, like time.Now
			clock.Store(time.Now().UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()) }
			src := &benchSource{now: now, lifetime: time.Hour, release: make(chan struct{})}
			defer close(src.release)
			c := NewCache(src, CacheOptions{Now: now})
			ctx := context.Background()
			if _, err := c.Token(ctx); err != nil {
				b.Fatal(err)
			}
			if stale {
				// Past the refresh point, still usable.
				clock.Add(int64(50 * time.Minute))
				c.Token(ctx) // starts the refresh, which blocks in src
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if tok, err := c.Token(ctx); err != nil || tok.AccessToken == "" {
						b.Errorf("Token: %v", err)
						return
					}
				}
			})
		})
	}
}
