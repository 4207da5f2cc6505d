package ims

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// Inside a synctest bubble time.Now and timers are virtual: time.Sleep
// advances the fake clock once every goroutine in the bubble is blocked.

func newRunCache(src TokenSource, o CacheOptions) *Cache {
	c := NewCache(src, o)
	c.rand = func() float64 { return 0 }
	return c
}

func TestRunKeepsTokenFreshWithoutTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{now: time.Now, lifetime: time.Hour}
		c := newRunCache(src, CacheOptions{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)

		synctest.Wait()
		if src.Calls() != 1 {
			t.Fatalf("after start: %d calls; want 1 (Run fetches at once)", src.Calls())
		}
		// Refresh point: 2/3 of an hour.
		time.Sleep(40*time.Minute - time.Second)
		synctest.Wait()
		if src.Calls() != 1 {
			t.Fatalf("before the refresh point: %d calls; want 1", src.Calls())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if src.Calls() != 2 {
			t.Fatalf("after the refresh point: %d calls; want 2", src.Calls())
		}
		// Over a day without traffic, the token is always fresh: every
		// Token call returns at once and IMS sees a refresh every 40 min.
		for range 36 {
			time.Sleep(40 * time.Minute)
			synctest.Wait()
			st := c.State()
			if !st.Valid || !time.Now().Before(st.RefreshAt) {
				t.Fatalf("at %v: state %+v; want a fresh token", time.Now(), st)
			}
		}
		if got := src.Calls(); got != 38 {
			t.Errorf("%d calls in a day; want 38", got)
		}
	})
}

func TestRunRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		outage := &Error{StatusCode: 503}
		src := &fakeSource{now: time.Now, lifetime: time.Hour, errs: []error{outage, outage, outage}}
		c := newRunCache(src, CacheOptions{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)

		// Attempts at 0, 1 s, 3 s and 7 s: backoff 1 s, 2 s, 4 s.
		for _, step := range []struct {
			sleep time.Duration
			calls int
		}{{0, 1}, {999 * time.Millisecond, 1}, {time.Millisecond, 2}, {2 * time.Second, 3}, {4 * time.Second, 4}} {
			time.Sleep(step.sleep)
			synctest.Wait()
			if src.Calls() != step.calls {
				t.Fatalf("at %v: %d calls; want %d", step.sleep, src.Calls(), step.calls)
			}
		}
		if st := c.State(); !st.Valid || st.ConsecutiveFailures != 0 || st.Failures != 3 || st.Exchanges != 4 {
			t.Errorf("state %+v; want a valid token after 3 failures and 4 exchanges", st)
		}
	})
}

func TestRunWokenByInvalidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{now: time.Now, lifetime: time.Hour}
		c := newRunCache(src, CacheOptions{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		synctest.Wait()

		time.Sleep(time.Minute)
		src.set(func(s *fakeSource) { s.errs = []error{errors.New("connection reset")} })
		if !c.Invalidate("token-1") {
			t.Fatal("Invalidate = false; want true")
		}
		synctest.Wait()
		if src.Calls() != 2 {
			t.Fatalf("after Invalidate: %d calls; want 2", src.Calls())
		}
		// The refetch failed; Run retries after the backoff, not at the old
		// token's refresh point 39 minutes away.
		time.Sleep(time.Second)
		synctest.Wait()
		if src.Calls() != 3 || !c.State().Valid {
			t.Fatalf("1 s after a failed refetch: %d calls, state %+v; want 3 and a valid token", src.Calls(), c.State())
		}
		tok, err := c.Token(ctx)
		if err != nil || tok.AccessToken != "token-3" {
			t.Errorf("Token() = %s, %v; want token-3", tok.AccessToken, err)
		}
	})
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{now: time.Now, lifetime: time.Hour, gate: make(chan struct{})}
		c := newRunCache(src, CacheOptions{FetchTimeout: 10 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			c.Run(ctx)
			close(done)
		}()
		synctest.Wait() // Run waits on the gated fetch
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after its context ended")
		}
		// The abandoned fetch still ends, at its own timeout.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if st := c.State(); !errors.Is(st.LastError, context.DeadlineExceeded) || IsPermanent(st.LastError) {
			t.Errorf("last error %v; want a transient deadline error", st.LastError)
		}
	})
}

func TestFetchTimeoutReachesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{now: time.Now, lifetime: time.Hour, gate: make(chan struct{})}
		c := newRunCache(src, CacheOptions{FetchTimeout: 5 * time.Second, Name: "author"})
		_, err := c.Token(t.Context())
		var ue *UnavailableError
		if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) || ue.Route != "author" {
			t.Errorf("Token() error = %v; want an *UnavailableError for author wrapping the fetch timeout", err)
		}
	})
}
