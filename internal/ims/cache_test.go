package ims

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
	"github.com/rs/zerolog"
)

// fakeSource hands out numbered tokens, or queued errors first.
type fakeSource struct {
	now      func() time.Time
	lifetime time.Duration

	mu      sync.Mutex
	calls   int
	errs    []error
	failAll error
	// gate, if set, holds each call until it is closed or ctx ends.
	gate chan struct{}
	// entered, if set, receives one value per call as it starts.
	entered chan struct{}
	ctxErrs []error
}

func (s *fakeSource) Token(ctx context.Context) (Token, error) {
	s.mu.Lock()
	s.calls++
	n := s.calls
	err := s.failAll
	if len(s.errs) > 0 {
		err, s.errs = s.errs[0], s.errs[1:]
	}
	gate, entered := s.gate, s.entered
	s.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
	s.mu.Lock()
	s.ctxErrs = append(s.ctxErrs, ctx.Err())
	s.mu.Unlock()
	if err != nil {
		return Token{}, err
	}
	now := s.now()
	return Token{AccessToken: fmt.Sprintf("token-%d", n), IssuedAt: now, ExpiresAt: now.Add(s.lifetime)}, nil
}

func (s *fakeSource) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *fakeSource) set(f func(s *fakeSource)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// fetchWaiter collects OnFetch results so a test can wait for a background
// fetch to finish.
type fetchWaiter chan error

func (w fetchWaiter) hook(_ time.Duration, err error) { w <- err }

func (w fetchWaiter) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch finished within 10s")
		return nil
	}
}

func newTestCache(src TokenSource, clock *fakeClock, o CacheOptions) *Cache {
	o.Now = clock.Now
	c := NewCache(src, o)
	c.rand = func() float64 { return 0 }
	return c
}

func mustToken(t *testing.T, c *Cache) Token {
	t.Helper()
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	return tok
}

func TestCacheFreshStaleExpired(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: 24 * time.Hour}
	fetched := make(fetchWaiter, 10)
	c := newTestCache(src, clock, CacheOptions{OnFetch: fetched.hook})

	if tok := mustToken(t, c); tok.AccessToken != "token-1" {
		t.Fatalf("first Token() = %s; want token-1", tok.AccessToken)
	}
	fetched.wait(t)

	clock.Advance(15 * time.Hour) // fresh: refresh point is 2/3 of 24 h
	if tok := mustToken(t, c); tok.AccessToken != "token-1" || src.Calls() != 1 {
		t.Fatalf("fresh Token() = %s after %d calls; want token-1 after 1", tok.AccessToken, src.Calls())
	}

	clock.Advance(2 * time.Hour) // stale: served, refreshed in the background
	if tok := mustToken(t, c); tok.AccessToken != "token-1" {
		t.Fatalf("stale Token() = %s; want token-1", tok.AccessToken)
	}
	if err := fetched.wait(t); err != nil {
		t.Fatal(err)
	}
	if tok := mustToken(t, c); tok.AccessToken != "token-2" || src.Calls() != 2 {
		t.Fatalf("after refresh Token() = %s after %d calls; want token-2 after 2", tok.AccessToken, src.Calls())
	}

	clock.Advance(25 * time.Hour) // expired: the caller waits for a new one
	if tok := mustToken(t, c); tok.AccessToken != "token-3" || src.Calls() != 3 {
		t.Fatalf("after expiry Token() = %s after %d calls; want token-3 after 3", tok.AccessToken, src.Calls())
	}
}

func TestCacheExpiryMarginCountsAsExpired(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	c := newTestCache(src, clock, CacheOptions{})
	mustToken(t, c)
	// 20 s before expiry is inside the 30 s margin: the token is not handed
	// out even though the background refresh would have replaced it.
	clock.Advance(time.Hour - 20*time.Second)
	if tok := mustToken(t, c); tok.AccessToken != "token-2" {
		t.Errorf("Token() near expiry = %s; want token-2", tok.AccessToken)
	}
}

func TestCacheSingleflightAgainstSimulatedIMS(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	c := NewCache(ti.exchange(t, clock.Now), CacheOptions{Now: clock.Now})

	const callers = 100
	var wg sync.WaitGroup
	tokens := make([]string, callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			tok, err := c.Token(t.Context())
			tokens[i], errs[i] = tok.AccessToken, err
		})
	}
	close(start)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("caller %d got %q, %v; want the same token as caller 0", i, tokens[i], errs[i])
		}
	}
	if got := ti.IMS.Exchanges(); got != 1 {
		t.Errorf("IMS saw %d exchanges for %d concurrent callers; want 1", got, callers)
	}
}

func TestCacheCallerGivesUpAlone(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	c := newTestCache(src, clock, CacheOptions{})

	ctxA, cancelA := context.WithCancel(t.Context())
	errA := make(chan error, 1)
	go func() {
		_, err := c.Token(ctxA)
		errA <- err
	}()
	<-src.entered // A's fetch is in flight

	type result struct {
		tok Token
		err error
	}
	resB := make(chan result, 1)
	go func() {
		tok, err := c.Token(t.Context())
		resB <- result{tok, err}
	}()

	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Errorf("A's error = %v; want context.Canceled", err)
	}
	close(src.gate)
	if r := <-resB; r.err != nil || r.tok.AccessToken != "token-1" {
		t.Errorf("B got %v, %v; want token-1", r.tok.AccessToken, r.err)
	}
	if src.Calls() != 1 {
		t.Errorf("source called %d times; want 1", src.Calls())
	}
	if src.ctxErrs[0] != nil {
		t.Errorf("the shared fetch saw ctx error %v after A gave up; want nil", src.ctxErrs[0])
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	clock.Advance(2 * time.Hour)
	if _, err := c.Token(ctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "wait for IMS access token") {
		t.Errorf("Token(cancelled) error = %v; want a wrapped context.Canceled", err)
	}
}

func TestCacheOutageWhileTokenValid(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	fetched := make(fetchWaiter, 10)
	var logs syncBuffer
	c := newTestCache(src, clock, CacheOptions{OnFetch: fetched.hook, Name: "author", Logger: zerolog.New(&logs)})
	mustToken(t, c)
	fetched.wait(t)

	down := &Error{StatusCode: 503, Code: "server_error", Description: "down"}
	src.set(func(s *fakeSource) { s.failAll = down })
	clock.Advance(41 * time.Minute) // past the refresh point at 40 min

	wantCalls := 1
	for attempt := 1; attempt <= 6; attempt++ {
		if tok := mustToken(t, c); tok.AccessToken != "token-1" {
			t.Fatalf("attempt %d: Token() = %s; want the still-valid token-1", attempt, tok.AccessToken)
		}
		if err := fetched.wait(t); !errors.Is(err, down) {
			t.Fatalf("attempt %d: fetch error = %v; want the outage", attempt, err)
		}
		wantCalls++
		// Within the backoff, nobody calls IMS.
		mustToken(t, c)
		if src.Calls() != wantCalls {
			t.Fatalf("attempt %d: %d calls; want %d", attempt, src.Calls(), wantCalls)
		}
		st := c.State()
		if st.ConsecutiveFailures != attempt || !st.Valid || st.LastError != down {
			t.Fatalf("attempt %d: state %+v; want %d failures, valid, last error set", attempt, st, attempt)
		}
		clock.Advance(st.NextAttempt.Sub(clock.Now()))
	}

	// Past expiry (and its margin) with IMS still down: an error at once,
	// never the expired token.
	clock.Advance(time.Hour)
	_, err := c.Token(t.Context())
	if err == nil {
		t.Fatal("Token() after expiry returned no error")
	}
	fetched.wait(t)
	want := `no valid IMS access token for route "author": ims: 503 server_error: down (next attempt in `
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q; want prefix %q", err, want)
	}
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, down) || ue.RetryIn <= 0 {
		t.Errorf("error %v: want an *UnavailableError wrapping the outage with RetryIn > 0", err)
	}
	callsAfterExpiry := src.Calls()
	if _, err := c.Token(t.Context()); err == nil || src.Calls() != callsAfterExpiry {
		t.Errorf("Token() in backoff: err %v, %d calls; want an error without calling IMS (%d calls)", err, src.Calls(), callsAfterExpiry)
	}

	src.set(func(s *fakeSource) { s.failAll = nil })
	clock.Advance(c.State().NextAttempt.Sub(clock.Now()))
	if tok := mustToken(t, c); tok.IsZero() {
		t.Fatal("no token after IMS recovered")
	}
	if st := c.State(); st.ConsecutiveFailures != 0 || st.LastError != nil || !st.Valid {
		t.Errorf("state after recovery = %+v; want no failures", st)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), `"ims_status":503`) {
		t.Errorf("logs lack a warning with ims_status:\n%s", logs.String())
	}
}

func TestCacheBackoffGrowthAndCap(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
		err    error
		want   []float64 // seconds
	}{
		{
			name:   "transient without jitter",
			jitter: 0,
			err:    errors.New("dial tcp: connection refused"),
			want:   []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300},
		},
		{
			name:   "transient with maximum jitter halves each delay",
			jitter: 1,
			err:    &Error{StatusCode: 502},
			want:   []float64{0.5, 1, 2, 4, 8, 16, 32, 64, 128, 150, 150},
		},
		{
			name:   "permanent",
			jitter: 0,
			err:    &Error{StatusCode: 401, Code: "invalid_client"},
			want:   []float64{600, 600, 600},
		},
		{
			name:   "permanent with jitter",
			jitter: 1,
			err:    &Error{StatusCode: 400, Code: "invalid_scope"},
			want:   []float64{540, 540},
		},
		{
			name:   "retry-after lengthens",
			jitter: 0,
			err:    &Error{StatusCode: 429, RetryAfter: 90 * time.Second},
			want:   []float64{90, 90, 90, 90, 90, 90, 90, 128, 256, 300},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			src := &fakeSource{now: clock.Now, lifetime: time.Hour, failAll: tt.err}
			var logs syncBuffer
			c := newTestCache(src, clock, CacheOptions{Logger: zerolog.New(&logs)})
			c.rand = func() float64 { return tt.jitter }
			for i, w := range tt.want {
				want := time.Duration(w * float64(time.Second))
				_, err := c.Token(t.Context())
				if !errors.Is(err, tt.err) {
					t.Fatalf("failure %d: error %v; want %v", i+1, err, tt.err)
				}
				st := c.State()
				if got := st.NextAttempt.Sub(clock.Now()); got != want {
					t.Errorf("failure %d: backoff %v; want %v", i+1, got, want)
				}
				clock.Advance(st.NextAttempt.Sub(clock.Now()))
			}
			if src.Calls() != len(tt.want) {
				t.Errorf("%d calls; want %d", src.Calls(), len(tt.want))
			}
			level := `"level":"warn"`
			if IsPermanent(tt.err) {
				level = `"level":"error"`
			}
			if got := strings.Count(logs.String(), level); got != len(tt.want) {
				t.Errorf("%d log lines at %s; want %d:\n%s", got, level, len(tt.want), logs.String())
			}
		})
	}
}

func TestCacheRetryAfterBeyondTokenExpiry(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: 10 * time.Minute}
	fetched := make(fetchWaiter, 10)
	c := newTestCache(src, clock, CacheOptions{OnFetch: fetched.hook})
	mustToken(t, c)
	fetched.wait(t)

	// Transient backoff is clamped so that a retry happens before the token
	// stops being served...
	src.set(func(s *fakeSource) { s.errs = []error{&Error{StatusCode: 500}} })
	clock.Advance(9 * time.Minute)
	c.opt.MinBackoff = 5 * time.Minute
	mustToken(t, c)
	fetched.wait(t)
	if st := c.State(); !st.NextAttempt.Equal(st.TokenExpiresAt.Add(-30 * time.Second)) {
		t.Errorf("next attempt %v; want the end of the usable window %v", st.NextAttempt, st.TokenExpiresAt.Add(-30*time.Second))
	}

	// ...but IMS's Retry-After is honoured even then.
	src.set(func(s *fakeSource) { s.errs = []error{&Error{StatusCode: 429, RetryAfter: 20 * time.Minute}} })
	clock.Advance(c.State().NextAttempt.Sub(clock.Now()))
	if _, err := c.Token(t.Context()); err == nil {
		t.Fatal("Token() with IMS throttling and the token past its usable window: no error")
	}
	fetched.wait(t)
	if st := c.State(); st.NextAttempt.Sub(clock.Now()) != 20*time.Minute {
		t.Errorf("next attempt in %v; want 20m (Retry-After)", st.NextAttempt.Sub(clock.Now()))
	}
}

func TestCacheInvalidate(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: 24 * time.Hour}
	fetched := make(fetchWaiter, 10)
	var logs syncBuffer
	c := newTestCache(src, clock, CacheOptions{OnFetch: fetched.hook, Logger: zerolog.New(&logs)})
	tok := mustToken(t, c)
	fetched.wait(t)

	clock.Advance(10 * time.Second)
	for _, tt := range []struct {
		name  string
		token string
	}{
		{"empty", ""},
		{"not the current token", "token-9"},
	} {
		if c.Invalidate(tt.token) {
			t.Errorf("%s: Invalidate = true; want false", tt.name)
		}
	}

	// The first invalidation takes effect even for a just-fetched token,
	// and only one of many concurrent callers triggers the refetch.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if c.Invalidate(tok.AccessToken) {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent Invalidate calls returned true; want 1", wins.Load())
	}
	fetched.wait(t)
	tok2 := mustToken(t, c)
	if tok2.AccessToken != "token-2" || src.Calls() != 2 {
		t.Errorf("after Invalidate Token() = %s after %d calls; want token-2 after 2", tok2.AccessToken, src.Calls())
	}

	// AEM rejecting the new token too, within MinInvalidateInterval, must
	// not cost another exchange: the token is kept and the fact logged.
	clock.Advance(10 * time.Second)
	if c.Invalidate(tok2.AccessToken) {
		t.Error("second invalidation within 30s: Invalidate = true; want false")
	}
	if !strings.Contains(logs.String(), "keeping it") {
		t.Errorf("ignored invalidation not logged:\n%s", logs.String())
	}
	if got := mustToken(t, c); got.AccessToken != "token-2" || src.Calls() != 2 {
		t.Errorf("Token() = %s after %d calls; want token-2 kept, 2 calls", got.AccessToken, src.Calls())
	}

	// Once the interval has passed, an invalidation takes effect again.
	clock.Advance(time.Minute)
	if !c.Invalidate(tok2.AccessToken) {
		t.Error("invalidation after the interval: Invalidate = false; want true")
	}
	fetched.wait(t)
	if got := mustToken(t, c); got.AccessToken != "token-3" {
		t.Errorf("Token() = %s; want token-3", got.AccessToken)
	}
}

func TestCacheInvalidateDuringBackoffWaits(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	fetched := make(fetchWaiter, 10)
	c := newTestCache(src, clock, CacheOptions{OnFetch: fetched.hook})
	tok := mustToken(t, c)
	fetched.wait(t)
	src.set(func(s *fakeSource) { s.failAll = &Error{StatusCode: 429, RetryAfter: 5 * time.Minute} })
	clock.Advance(50 * time.Minute)
	mustToken(t, c)
	fetched.wait(t)

	if !c.Invalidate(tok.AccessToken) {
		t.Fatal("Invalidate = false; want true")
	}
	_, err := c.Token(t.Context())
	var ue *UnavailableError
	if !errors.As(err, &ue) || src.Calls() != 2 {
		t.Errorf("Token() = %v after %d calls; want an *UnavailableError without calling IMS again (2 calls)", err, src.Calls())
	}
}

func TestCacheRejectsExpiredTokenFromSource(t *testing.T) {
	clock := newFakeClock()
	src := srcFunc(func(context.Context) (Token, error) {
		return Token{AccessToken: "old", ExpiresAt: clock.Now().Add(-time.Second)}, nil
	})
	c := newTestCache(src, clock, CacheOptions{Name: "publish"})
	tok, err := c.Token(t.Context())
	if err == nil || !tok.IsZero() {
		t.Fatalf("Token() = %v, %v; want no token and an error", tok, err)
	}
	if want := `no valid IMS access token for route "publish": token source returned ims.Token{expires_at=`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q; want prefix %q", err, want)
	}
	if strings.Contains(err.Error(), "old") {
		t.Errorf("error %q reveals the token", err)
	}
}

type certSource struct {
	fakeSource
	notAfter time.Time
}

func (s *certSource) CertificateNotAfter() time.Time { return s.notAfter }

func TestCacheState(t *testing.T) {
	clock := newFakeClock()
	notAfter := clock.Now().Add(300 * 24 * time.Hour)
	src := &certSource{fakeSource: fakeSource{now: clock.Now, lifetime: 24 * time.Hour}, notAfter: notAfter}
	c := newTestCache(src, clock, CacheOptions{})

	if st := c.State(); st.Valid || !st.TokenExpiresAt.IsZero() || st.Exchanges != 0 || !st.CertificateNotAfter.Equal(notAfter) {
		t.Errorf("initial state = %+v; want empty with the certificate expiry", st)
	}
	start := clock.Now()
	mustToken(t, c)
	st := c.State()
	want := CacheState{
		TokenIssuedAt:       start,
		TokenExpiresAt:      start.Add(24 * time.Hour),
		RefreshAt:           start.Add(16 * time.Hour),
		Valid:               true,
		LastAttempt:         start,
		LastSuccess:         start,
		NextAttempt:         start.Add(16 * time.Hour),
		Exchanges:           1,
		CertificateNotAfter: notAfter,
	}
	if st != want {
		t.Errorf("state = %+v\nwant    %+v", st, want)
	}
	if !c.CertificateNotAfter().Equal(notAfter) {
		t.Errorf("CertificateNotAfter() = %v; want %v", c.CertificateNotAfter(), notAfter)
	}
}

func TestCacheSchedule(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		issued      time.Time
		expires     time.Time
		fetched     time.Time
		jitter      float64
		refreshAt   time.Duration // after fetched
		usableUntil time.Duration // after fetched
	}{
		{"24h token", t0, t0.Add(24 * time.Hour), t0, 0, 16 * time.Hour, 24*time.Hour - 30*time.Second},
		{"24h token, full jitter", t0, t0.Add(24 * time.Hour), t0, 1, time.Duration(float64(16*time.Hour) * 0.95), 24*time.Hour - 30*time.Second},
		{"10m token: 5m before expiry", t0, t0.Add(10 * time.Minute), t0, 0, 5 * time.Minute, 10*time.Minute - 30*time.Second},
		{"1m token", t0, t0.Add(time.Minute), t0, 0, 30 * time.Second, 45 * time.Second},
		{"4s token", t0, t0.Add(4 * time.Second), t0, 0, 2 * time.Second, 3 * time.Second},
		{"no issue time", time.Time{}, t0.Add(time.Hour), t0, 0, 40 * time.Minute, time.Hour - 30*time.Second},
		{"old on arrival", t0.Add(-23 * time.Hour), t0.Add(time.Hour), t0, 0, time.Second, time.Hour - 30*time.Second},
		{"issued in the future (skew)", t0.Add(time.Hour), t0.Add(25 * time.Hour), t0, 0, 16*time.Hour + 40*time.Minute, 25*time.Hour - 30*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(nil, CacheOptions{})
			c.rand = func() float64 { return tt.jitter }
			refreshAt, usableUntil := c.schedule(Token{AccessToken: "x", IssuedAt: tt.issued, ExpiresAt: tt.expires}, tt.fetched)
			if got := refreshAt.Sub(tt.fetched); got != tt.refreshAt {
				t.Errorf("refresh after %v; want %v", got, tt.refreshAt)
			}
			if got := usableUntil.Sub(tt.fetched); got != tt.usableUntil {
				t.Errorf("usable for %v; want %v", got, tt.usableUntil)
			}
		})
	}
}

func TestCacheOptionsDefaults(t *testing.T) {
	var o CacheOptions
	o.RefreshFraction = 1.5
	o.MinBackoff = time.Hour
	o.setDefaults()
	if o.RefreshFraction != 2.0/3 || o.RefreshBefore != 5*time.Minute || o.ExpiryMargin != 30*time.Second ||
		o.FetchTimeout != 30*time.Second || o.MaxBackoff != time.Hour || o.PermanentBackoff != 10*time.Minute ||
		o.MinInvalidateInterval != 30*time.Second || o.Now == nil {
		t.Errorf("defaults = %+v", o)
	}
}

func TestCacheHotPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	clock := newFakeClock()
	c := newTestCache(&fakeSource{now: clock.Now, lifetime: time.Hour}, clock, CacheOptions{})
	ctx := t.Context()
	mustToken(t, c)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Token(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("fresh Token() allocates %v times; want 0", allocs)
	}
}

func BenchmarkCacheTokenFresh(b *testing.B) {
	src := &fakeSource{now: time.Now, lifetime: time.Hour}
	c := NewCache(src, CacheOptions{})
	if _, err := c.Token(b.Context()); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Token(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestCacheEndToEndWithSimulatedIMS(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	fetched := make(fetchWaiter, 10)
	var logs syncBuffer
	c := NewCache(ti.exchange(t, clock.Now), CacheOptions{Now: clock.Now, OnFetch: fetched.hook, Name: "author", Logger: zerolog.New(&logs)})

	tok := mustToken(t, c)
	fetched.wait(t)
	if err := ti.IMS.ValidateAccessToken(tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	// AEM says 401 after IMS revoked the token: one refetch.
	ti.IMS.Revoke(tok.AccessToken)
	clock.Advance(time.Minute)
	if !c.Invalidate(tok.AccessToken) {
		t.Fatal("Invalidate = false; want true")
	}
	fetched.wait(t)
	tok2 := mustToken(t, c)
	if tok2.AccessToken == tok.AccessToken || ti.IMS.ValidateAccessToken(tok2.AccessToken) != nil {
		t.Error("no new valid token after Invalidate")
	}
	if got := ti.IMS.Exchanges(); got != 2 {
		t.Errorf("IMS saw %d exchanges; want 2", got)
	}
	if !c.State().CertificateNotAfter.Equal(ti.Creds.Cert.NotAfter) {
		t.Errorf("state certificate expiry %v; want %v", c.State().CertificateNotAfter, ti.Creds.Cert.NotAfter)
	}
}

// TestNoSecretInErrorsOrLogs drives successes and every kind of failure
// through the cache and searches everything printed for the client secret,
// key material, JWTs and access tokens.
func TestNoSecretInErrorsOrLogs(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	var logs syncBuffer
	logger := zerolog.New(&logs).Level(zerolog.DebugLevel)
	var printed []string
	var tokens []string

	newCache := func(sc *ServiceCredentials) *Cache {
		x, err := NewJWTExchange(sc, ExchangeOptions{BaseURL: ti.URL, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return NewCache(x, CacheOptions{Now: clock.Now, Logger: logger, Name: "author"})
	}
	record := func(tok Token, err error) {
		if err != nil {
			printed = append(printed, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		}
		if !tok.IsZero() {
			tokens = append(tokens, tok.AccessToken)
			printed = append(printed, fmt.Sprintf("%v %+v %#v", tok, tok, tok))
			logger.Info().Object("token", tok).Msg("token")
		}
	}

	c := newCache(ti.SC)
	record(c.Token(t.Context()))
	clock.Advance(time.Minute)
	c.Invalidate(tokens[0])
	record(c.Token(t.Context()))
	printed = append(printed, fmt.Sprintf("%+v", c.State()))

	wrongSecret := *ti.SC
	wrongSecret.ClientSecret = Secret(ti.Creds.ClientSecret + "-x")
	record(newCache(&wrongSecret).Token(t.Context()))

	ti.IMS.Fail(1, 429, "too_many_requests", "slow down", time.Minute)
	record(newCache(ti.SC).Token(t.Context()))
	ti.IMS.SetDown(true)
	record(newCache(ti.SC).Token(t.Context()))
	ti.IMS.SetDown(false)

	otherCreds, _ := newCreds(t, sim.CredentialOptions{})
	ti.IMS.RegisterIntegration(sim.Integration{
		IMSEndpoint: ti.Creds.IMSEndpoint, ClientID: ti.Creds.ClientID, ClientSecret: ti.Creds.ClientSecret,
		Org: ti.Creds.Org, TechnicalAccountID: ti.Creds.TechnicalAccountID, Metascopes: ti.Creds.Metascopes, Certificate: otherCreds.Cert,
	})
	record(newCache(ti.SC).Token(t.Context()))
	logger.Info().Object("creds", ti.SC).Str("str", ti.SC.String()).Msg("credentials")

	if len(tokens) != 2 || len(printed) < 10 {
		t.Fatalf("scenario produced %d tokens and %d outputs; want 2 and at least 10", len(tokens), len(printed))
	}
	keyPEM, _ := ti.Creds.PrivateKeyPEM(sim.PKCS1)
	keyLines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	var jwts []string
	for _, r := range ti.Requests() {
		jwts = append(jwts, r.Form.Get("jwt_token"))
	}
	all := append(printed, logs.String())
	for _, out := range all {
		assertNoSecret(t, out, ti.Creds.ClientSecret, keyLines)
		for _, s := range append(jwts, tokens...) {
			if strings.Contains(out, s) || strings.Contains(out, strings.Split(s, ".")[2]) {
				t.Errorf("output contains a JWT or access token: %.200q", out)
			}
		}
	}
	for _, want := range []string{`"level":"error"`, `"ims_error":"invalid_client"`, `"ims_error":"invalid_signature"`, `"ims_status":429`, `"route":"author"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func TestCacheFetchReusesNewerResult(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	c := newTestCache(src, clock, CacheOptions{})
	stale := c.state.Load()
	tok := mustToken(t, c)

	// A caller that saw the empty cache joins late: the fresh token is reused.
	v, err := c.fetchFunc(t.Context(), stale)()
	if err != nil || v.(Token) != tok || src.Calls() != 1 {
		t.Errorf("late fetch = %v, %v after %d calls; want the cached token and 1 call", v, err, src.Calls())
	}

	// A late caller during a backoff gets the last error, or the token while
	// it is still usable, without calling IMS.
	outage := &Error{StatusCode: 503}
	src.set(func(s *fakeSource) { s.failAll = outage })
	clock.Advance(45 * time.Minute)
	beforeFailure := c.state.Load()
	if _, err := c.fetchFunc(t.Context(), beforeFailure)(); !errors.Is(err, outage) {
		t.Fatalf("fetch error = %v; want the outage", err)
	}
	v, err = c.fetchFunc(t.Context(), beforeFailure)()
	if err != nil || v.(Token) != tok {
		t.Errorf("late fetch in backoff with a usable token = %v, %v; want the token", v, err)
	}
	clock.Advance(20 * time.Minute)
	c.record(clock.Now(), clock.Now(), Token{}, outage)
	if _, err := c.fetchFunc(t.Context(), beforeFailure)(); !errors.Is(err, outage) || src.Calls() != 2 {
		t.Errorf("late fetch in backoff without a token: %v after %d calls; want the outage after 2", err, src.Calls())
	}
}
