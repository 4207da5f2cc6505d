package ims

import (
	"context"

	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// namedSource hands out tokens named after it, numbered per call.
type namedSource struct {
	name     string
	now      func() time.Time
	lifetime time.Duration
	notAfter time.Time

	mu    sync.Mutex
	calls int
	err   error
	gate  chan struct{}
}

func (s *namedSource) Token(ctx context.Context) (Token, error) {
	s.mu.Lock()
	s.calls++
	n, err, gate := s.calls, s.err, s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
	if err != nil {
		return Token{}, err
	}
	now := s.now()
	return Token{AccessToken: fmt.Sprintf("%s-%d", s.name, n), IssuedAt: now, ExpiresAt: now.Add(s.lifetime)}, nil
}

func (s *namedSource) CertificateNotAfter() time.Time { return s.notAfter }

func (s *namedSource) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func TestCacheSetSourceServesCurrentTokenUntilNewArrives(t *testing.T) {
	clock := newFakeClock()
	oldSrc := &namedSource{name: "old", now: clock.Now, lifetime: time.Hour, notAfter: clock.Now().Add(time.Hour)}
	newSrc := &namedSource{name: "new", now: clock.Now, lifetime: time.Hour, notAfter: clock.Now().Add(2 * time.Hour), gate: make(chan struct{})}
	fetched := make(fetchWaiter, 10)
	c := newTestCache(oldSrc, clock, CacheOptions{OnFetch: fetched.hook})
	if tok := mustToken(t, c); tok.AccessToken != "old-1" {
		t.Fatalf("token %s; want old-1", tok.AccessToken)
	}
	fetched.wait(t)

	c.SetSource(newSrc)
	if !c.State().CertificateNotAfter.Equal(newSrc.notAfter) {
		t.Errorf("certificate expiry %v; want the new source's %v", c.State().CertificateNotAfter, newSrc.notAfter)
	}
	// The new source's fetch is under way (held at its gate): the old,
	// still valid token is served meanwhile, and no second fetch starts.
	for range 5 {
		if tok := mustToken(t, c); tok.AccessToken != "old-1" {
			t.Fatalf("during the switch: token %s; want old-1", tok.AccessToken)
		}
	}
	close(newSrc.gate)
	if err := fetched.wait(t); err != nil {
		t.Fatal(err)
	}
	if tok := mustToken(t, c); tok.AccessToken != "new-1" {
		t.Errorf("after the switch: token %s; want new-1", tok.AccessToken)
	}
	if oldSrc.Calls() != 1 || newSrc.Calls() != 1 {
		t.Errorf("calls old=%d new=%d; want 1 and 1", oldSrc.Calls(), newSrc.Calls())
	}
}

func TestCacheSetSourceClearsBackoff(t *testing.T) {
	clock := newFakeClock()
	bad := &namedSource{name: "bad", now: clock.Now, lifetime: time.Hour, err: &Error{StatusCode: 401, Code: "invalid_client"}}
	good := &namedSource{name: "good", now: clock.Now, lifetime: time.Hour}
	c := newTestCache(bad, clock, CacheOptions{})
	if _, err := c.Token(t.Context()); !IsPermanent(err) {
		t.Fatalf("Token() error = %v; want the permanent IMS error", err)
	}
	// In a 10-minute permanent backoff: Token fails at once.
	if _, err := c.Token(t.Context()); err == nil || bad.Calls() != 1 {
		t.Fatalf("in backoff: %v after %d calls; want an error without a call", err, bad.Calls())
	}
	c.SetSource(good)
	tok, err := c.Token(t.Context())
	if err != nil || tok.AccessToken != "good-1" {
		t.Errorf("after SetSource: %v, %v; want good-1 at once", tok, err)
	}
	if st := c.State(); st.LastError != nil || st.ConsecutiveFailures != 0 {
		t.Errorf("state %+v; want the old failures forgotten", st)
	}
}

func TestCacheSetSourceDuringOldFetch(t *testing.T) {
	tests := []struct {
		name   string
		oldErr error
	}{
		{"old fetch succeeds", nil},
		{"old fetch fails", &Error{StatusCode: 400, Code: "invalid_signature"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				oldSrc := &namedSource{name: "old", now: time.Now, lifetime: time.Hour, err: tt.oldErr, gate: make(chan struct{})}
				newSrc := &namedSource{name: "new", now: time.Now, lifetime: time.Hour}
				c := newRunCache(oldSrc, CacheOptions{})
				done := make(chan error, 1)
				go func() {
					_, err := c.Token(context.Background())
					done <- err
				}()
				synctest.Wait()     // the old fetch is held at its gate
				c.SetSource(newSrc) // joins the old fetch: one fetch at a time
				close(oldSrc.gate)
				synctest.Wait()
				<-done
				if newSrc.Calls() != 0 {
					t.Fatalf("new source called %d times while the old fetch ran; want 0", newSrc.Calls())
				}
				if st := c.State(); st.LastError != nil || !st.NextAttempt.IsZero() {
					t.Errorf("state %+v; want no error and no backoff from the old source", st)
				}
				// The next call fetches from the new source.
				tok, err := c.Token(t.Context())
				if tt.oldErr == nil {
					// The old token was kept, stale: it is served while the
					// new one is fetched in the background.
					if err != nil || tok.AccessToken != "old-1" {
						t.Errorf("Token() = %v, %v; want the old token while refreshing", tok.AccessToken, err)
					}
					synctest.Wait()
					tok, err = c.Token(t.Context())
				}
				if err != nil || tok.AccessToken != "new-1" {
					t.Errorf("Token() = %v, %v; want new-1", tok.AccessToken, err)
				}
			})
		})
	}
}

func TestRunWokenBySetSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		oldSrc := &namedSource{name: "old", now: time.Now, lifetime: time.Hour}
		newSrc := &namedSource{name: "new", now: time.Now, lifetime: time.Hour}
		c := newRunCache(oldSrc, CacheOptions{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		synctest.Wait()
		time.Sleep(time.Minute)
		c.SetSource(newSrc)
		synctest.Wait()
		if newSrc.Calls() != 1 {
			t.Fatalf("new source called %d times; want 1 right after SetSource", newSrc.Calls())
		}
		if tok, err := c.Token(ctx); err != nil || tok.AccessToken != "new-1" {
			t.Errorf("Token() = %v, %v; want new-1", tok.AccessToken, err)
		}
		// Then the usual plan: the next refresh 40 min later.
		time.Sleep(40*time.Minute - time.Second)
		synctest.Wait()
		if newSrc.Calls() != 1 {
			t.Errorf("before the refresh point: %d calls; want 1", newSrc.Calls())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if newSrc.Calls() != 2 || oldSrc.Calls() != 1 {
			t.Errorf("after the refresh point: new %d, old %d calls; want 2 and 1", newSrc.Calls(), oldSrc.Calls())
		}
	})
}

// TestCacheCallerAfterRecordStartsNewFetch: a caller that needs a token after
// a fetch has recorded its result, but before that fetch has fully returned
// (here: held in OnFetch), starts a new fetch instead of joining the old one
// and getting its result, which has expired meanwhile.
func TestCacheCallerAfterRecordStartsNewFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var hooks atomic.Int32
		src := &fakeSource{now: time.Now, lifetime: time.Hour}
		c := newRunCache(src, CacheOptions{OnFetch: func(time.Duration, error) {
			if hooks.Add(1) == 1 {
				<-gate
			}
		}})
		go func() { _, _ = c.Token(context.Background()) }()
		synctest.Wait() // token-1 recorded; its fetch is held in OnFetch
		time.Sleep(2 * time.Hour)
		type result struct {
			tok Token
			err error
		}
		done := make(chan result, 1)
		go func() {
			tok, err := c.Token(context.Background())
			done <- result{tok, err}
		}()
		synctest.Wait()
		close(gate)
		synctest.Wait()
		r := <-done
		if r.err != nil || r.tok.AccessToken != "token-2" || src.Calls() != 2 {
			t.Errorf("Token() after expiry = %v, %v after %d calls; want token-2 from a new fetch", r.tok.AccessToken, r.err, src.Calls())
		}
	})
}

// TestCacheStaleCallerAfterRecordStartsRefresh: once a failed refresh has
// recorded its result (and is only finishing, here held in OnFetch), a
// caller past the backoff starts the next refresh; it is not told that a
// fetch is still running.
func TestCacheStaleCallerAfterRecordStartsRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		defer close(gate)
		var hooks atomic.Int32
		src := &fakeSource{now: time.Now, lifetime: time.Hour}
		c := newRunCache(src, CacheOptions{OnFetch: func(time.Duration, error) {
			if hooks.Add(1) == 2 {
				<-gate
			}
		}})
		mustToken(t, c)
		src.set(func(s *fakeSource) { s.failAll = &Error{StatusCode: 503} })
		time.Sleep(41 * time.Minute) // stale
		mustToken(t, c)              // starts refresh 2, which fails and is held
		synctest.Wait()
		src.set(func(s *fakeSource) { s.failAll = nil })
		time.Sleep(2 * time.Second) // past the 1 s backoff
		if tok := mustToken(t, c); tok.AccessToken != "token-1" {
			t.Fatalf("Token() = %s; want the stale token-1", tok.AccessToken)
		}
		synctest.Wait()
		if src.Calls() != 3 {
			t.Fatalf("%d calls; want 3: the stale caller starts a new refresh", src.Calls())
		}
		if tok := mustToken(t, c); tok.AccessToken != "token-3" {
			t.Errorf("Token() = %s; want token-3", tok.AccessToken)
		}
	})
}
