package ims

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// CacheOptions configure a Cache. The zero value gives sensible defaults for
// IMS's 24 h tokens.
type CacheOptions struct {
	// Now is the clock; nil means time.Now. Run sleeps on real timers, so in
	// production Now must be time.Now (tests of Run use testing/synctest).
	Now func() time.Time
	// RefreshFraction of a token's lifetime after which it is refreshed in
	// the background; 0 means 2/3. Up to 5% jitter is subtracted so that
	// replicas do not refresh in step.
	RefreshFraction float64
	// RefreshBefore: a token is also refreshed no later than this long before
	// it expires; 0 means 5 minutes. Capped at half the token's lifetime.
	RefreshBefore time.Duration
	// ExpiryMargin: a token this close to its expiry counts as expired and is
	// no longer handed out; 0 means 30 s. Capped at a quarter of the token's
	// remaining life.
	ExpiryMargin time.Duration
	// FetchTimeout bounds one shared fetch; 0 means 30 s. The fetch is not
	// cancelled when the caller that started it gives up.
	FetchTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered delay after a
	// transient failure; 0 means 1 s and 5 min. A Retry-After from IMS
	// lengthens the delay.
	MinBackoff, MaxBackoff time.Duration
	// PermanentBackoff is the delay after a permanent failure (a bad client,
	// signature or scope); 0 means 10 min.
	PermanentBackoff time.Duration
	// MinInvalidateInterval: after Invalidate has dropped a token, further
	// invalidations within this interval are ignored, so an AEM that rejects
	// every token cannot make us hammer IMS (one exchange per request);
	// 0 means 30 s. The first invalidation always takes effect, however
	// young the token: a token revoked right after it was issued is useless.
	MinInvalidateInterval time.Duration
	// Logger receives one line per fetch; the zero value discards them.
	Logger zerolog.Logger
	// OnFetch, if set, is called after each exchange with its duration and
	// result, e.g. for metrics. It must not block.
	OnFetch func(d time.Duration, err error)
	// Name identifies the route in logs and errors.
	Name string
}

func (o *CacheOptions) setDefaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if !(o.RefreshFraction > 0 && o.RefreshFraction < 1) {
		o.RefreshFraction = 2.0 / 3
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RefreshBefore, 5*time.Minute)
	def(&o.ExpiryMargin, 30*time.Second)
	def(&o.FetchTimeout, 30*time.Second)
	def(&o.MinBackoff, time.Second)
	def(&o.MaxBackoff, 5*time.Minute)
	def(&o.PermanentBackoff, 10*time.Minute)
	def(&o.MinInvalidateInterval, 30*time.Second)
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
}

// Cache is a TokenSource that holds one token from src and keeps it fresh:
//
//   - fresh: Token returns it at once, without locks or allocation;
//   - stale (past the refresh point): Token returns it and starts one
//     background refresh;
//   - expired or missing: callers wait on one shared fetch, each giving up on
//     its own context.
//
// At most one fetch runs at a time, and no lock is held while it does. After
// a failure the current token is served until it expires, and fetches are
// retried with exponential backoff and jitter (much longer after a permanent
// IMS error); while in backoff without a usable token Token fails at once
// rather than calling IMS. Token never returns an expired token. Run keeps
// the token fresh without traffic. A Cache is safe for concurrent use.
type Cache struct {
	// src is replaced by SetSource; a fetch records which one it used.
	src   atomic.Pointer[sourceRef]
	opt   CacheOptions
	log   zerolog.Logger
	group singleflight.Group
	// rand returns a value in [0, 1) for jitter.
	rand func() float64

	// state is replaced, never modified; writers hold mu, readers do not.
	state    atomic.Pointer[cacheSnapshot]
	mu       sync.Mutex
	fetching atomic.Bool
	// wake nudges Run to re-plan after a fetch or an invalidation.
	wake chan struct{}
}

// sourceRef holds a Cache's source. Each SetSource stores a new one, so
// comparing pointers tells whether a fetch used the current source.
type sourceRef struct{ ts TokenSource }

// cacheSnapshot is an immutable view of the cache.
type cacheSnapshot struct {
	tok       Token
	fetchedAt time.Time
	// refreshAt is when tok becomes stale; zero without a token.
	refreshAt time.Time
	// usableUntil is when tok stops being handed out (ExpiresAt minus margin).
	usableUntil time.Time
	// nextAttempt is the earliest time for the next fetch.
	nextAttempt time.Time

	// lastInvalidated is when Invalidate last dropped a token.
	lastInvalidated time.Time

	lastAttempt, lastSuccess time.Time
	lastErr                  error
	failures                 int
	exchanges, failuresTotal uint64
}

func (s *cacheSnapshot) usable(now time.Time) bool {
	return !s.tok.IsZero() && now.Before(s.usableUntil)
}

// flightKey is the only singleflight key: a Cache holds one token.
const flightKey = "token"

// NewCache returns a Cache over src. It fetches nothing until Token or Run
// is called.
func NewCache(src TokenSource, o CacheOptions) *Cache {
	o.setDefaults()
	c := &Cache{
		opt:  o,
		log:  o.Logger,
		rand: rand.Float64,
		wake: make(chan struct{}, 1),
	}
	c.state.Store(&cacheSnapshot{})
	c.src.Store(&sourceRef{ts: src})
	return c
}

// SetSource replaces the source, e.g. because the credentials file changed,
// and fetches from src at once: the current token, while usable, is still
// served until src's token arrives (in the background, and Run is woken);
// without one, callers wait on that fetch. Backoff earned by the old source
// is forgotten. A fetch from the old source that is still in flight keeps
// the single-fetch guarantee: it completes, its token (if any) is kept but
// counts as stale, its error does not put src in backoff, and the fetch from
// src follows it.
func (c *Cache) SetSource(src TokenSource) {
	c.mu.Lock()
	c.src.Store(&sourceRef{ts: src})
	n := *c.state.Load()
	n.refreshAt = time.Time{}
	n.nextAttempt = time.Time{}
	n.lastErr = nil
	n.failures = 0
	c.state.Store(&n)
	c.mu.Unlock()

	c.group.DoChan(flightKey, c.fetchFunc(context.Background(), &n))
	c.nudgeRun()
}

// Token returns a valid access token; see Cache for how it is obtained. When
// none can be had, the error is an *UnavailableError (or, if ctx ended first,
// wraps ctx's error).
func (c *Cache) Token(ctx context.Context) (Token, error) {
	s := c.state.Load()
	now := c.opt.Now()
	if now.Before(s.refreshAt) {
		return s.tok, nil
	}
	return c.slowToken(ctx, s, now)
}

func (c *Cache) slowToken(ctx context.Context, s *cacheSnapshot, now time.Time) (Token, error) {
	if s.usable(now) {
		if !now.Before(s.nextAttempt) && !c.fetching.Load() {
			c.group.DoChan(flightKey, c.fetchFunc(ctx, s))
		}
		return s.tok, nil
	}
	if s.lastErr != nil && now.Before(s.nextAttempt) {
		return Token{}, c.unavailable(s.lastErr, s.nextAttempt.Sub(now))
	}
	if err := ctx.Err(); err != nil {
		return Token{}, c.waitError(ctx)
	}
	ch := c.group.DoChan(flightKey, c.fetchFunc(ctx, s))
	select {
	case <-ctx.Done():
		return Token{}, c.waitError(ctx)
	case r := <-ch:
		now := c.opt.Now()
		if r.Err != nil {
			return Token{}, c.unavailable(r.Err, c.state.Load().nextAttempt.Sub(now))
		}
		tok := r.Val.(Token)
		if !tok.ValidAt(now) {
			return Token{}, c.unavailable(errors.New("the fetched token has already expired"), 0)
		}
		return tok, nil
	}
}

func (c *Cache) waitError(ctx context.Context) error {
	if c.opt.Name != "" {
		return fmt.Errorf("wait for IMS access token for route %q: %w", c.opt.Name, context.Cause(ctx))
	}
	return fmt.Errorf("wait for IMS access token: %w", context.Cause(ctx))
}

func (c *Cache) unavailable(err error, retryIn time.Duration) error {
	return &UnavailableError{Route: c.opt.Name, Err: err, RetryIn: max(retryIn, 0)}
}

// UnavailableError means a Cache holds no valid token and could not get one.
type UnavailableError struct {
	// Route is the cache's name.
	Route string
	// Err is the last fetch's error.
	Err error
	// RetryIn is how long until the next fetch may be attempted.
	RetryIn time.Duration
}

func (e *UnavailableError) Error() string {
	msg := "no valid IMS access token"
	if e.Route != "" {
		msg += fmt.Sprintf(" for route %q", e.Route)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.RetryIn > 0 {
		msg += " (next attempt in " + roundDuration(e.RetryIn).String() + ")"
	}
	return msg
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// RetryAfter is how long a client should wait before trying again; the
// proxy sends it as Retry-After.
func (e *UnavailableError) RetryAfter() time.Duration { return e.RetryIn }

func roundDuration(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// fetchFunc returns the shared fetch. observed is the state the caller saw:
// if another fetch has replaced it since, the result of that one is used
// instead of calling IMS again.
func (c *Cache) fetchFunc(ctx context.Context, observed *cacheSnapshot) func() (any, error) {
	return func() (any, error) {
		c.fetching.Store(true)
		recorded := false
		defer func() {
			if !recorded {
				c.fetching.Store(false)
			}
		}()

		now := c.opt.Now()
		if cur := c.state.Load(); cur != observed {
			switch {
			case now.Before(cur.refreshAt):
				return cur.tok, nil
			case cur.lastErr != nil && now.Before(cur.nextAttempt):
				if cur.usable(now) {
					return cur.tok, nil
				}
				return nil, cur.lastErr
			}
		}

		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.FetchTimeout)
		defer cancel()
		src := c.src.Load()
		start := c.opt.Now()
		tok, err := src.ts.Token(ctx)
		end := c.opt.Now()
		if err == nil && !tok.ValidAt(end) {
			err = fmt.Errorf("token source returned %v, not valid at %s", tok, end.UTC().Format(time.RFC3339))
		}
		s := c.recordFrom(src, start, end, tok, err)
		// From here on callers see the recorded state. One that still needs
		// a fetch must start a new one, not join this finished one and get
		// its result, which may already be stale for it.
		c.group.Forget(flightKey)
		c.fetching.Store(false)
		recorded = true
		c.logFetch(s, end.Sub(start), err)
		if c.opt.OnFetch != nil {
			c.opt.OnFetch(end.Sub(start), err)
		}
		c.nudgeRun()
		if err != nil {
			return nil, err
		}
		return tok, nil
	}
}

// record stores the outcome of a fetch from the current source.
func (c *Cache) record(start, end time.Time, tok Token, err error) *cacheSnapshot {
	return c.recordFrom(c.src.Load(), start, end, tok, err)
}

// recordFrom stores the outcome of a fetch from src and plans the next one.
// When SetSource has replaced src meanwhile, a token is kept but left stale,
// and an error is counted but changes no plan.
func (c *Cache) recordFrom(src *sourceRef, start, end time.Time, tok Token, err error) *cacheSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := *c.state.Load()
	n.exchanges++
	if src != c.src.Load() {
		if err != nil {
			n.failuresTotal++
		} else {
			n.tok, n.fetchedAt = tok, end
			_, n.usableUntil = c.schedule(tok, end)
			n.refreshAt, n.nextAttempt = time.Time{}, time.Time{}
		}
		c.state.Store(&n)
		return &n
	}
	n.lastAttempt = start
	if err == nil {
		n.tok, n.fetchedAt = tok, end
		n.refreshAt, n.usableUntil = c.schedule(tok, end)
		n.nextAttempt = n.refreshAt
		n.lastSuccess = end
		n.lastErr = nil
		n.failures = 0
	} else {
		n.failuresTotal++
		n.failures++
		n.lastErr = err
		n.nextAttempt = end.Add(c.backoff(n.failures, err))
		if n.usable(end) {
			// Retry no later than when the token stops being served, unless
			// IMS asked us to wait longer.
			if n.nextAttempt.After(n.usableUntil) {
				n.nextAttempt = maxTime(n.usableUntil, end.Add(retryAfterOf(err)))
			}
		} else {
			n.tok, n.fetchedAt, n.refreshAt, n.usableUntil = Token{}, time.Time{}, time.Time{}, time.Time{}
		}
	}
	c.state.Store(&n)
	return &n
}

// schedule returns when tok, fetched at fetchedAt, becomes stale and when it
// stops being handed out.
func (c *Cache) schedule(tok Token, fetchedAt time.Time) (refreshAt, usableUntil time.Time) {
	remaining := tok.ExpiresAt.Sub(fetchedAt)
	usableUntil = tok.ExpiresAt.Add(-min(c.opt.ExpiryMargin, remaining/4))

	issued := tok.IssuedAt
	if issued.IsZero() || !issued.Before(tok.ExpiresAt) || issued.After(fetchedAt) {
		issued = fetchedAt
	}
	lifetime := tok.ExpiresAt.Sub(issued)
	point := time.Duration(float64(lifetime) * c.opt.RefreshFraction * (1 - 0.05*c.rand()))
	refreshAt = minTime(issued.Add(point), tok.ExpiresAt.Add(-min(c.opt.RefreshBefore, lifetime/2)))
	// A token that is old on arrival must not make every call refresh.
	refreshAt = maxTime(refreshAt, fetchedAt.Add(min(c.opt.MinBackoff, remaining/2)))
	return minTime(refreshAt, usableUntil), usableUntil
}

// backoff returns the delay before the next attempt after the failures-th
// consecutive failure with err.
func (c *Cache) backoff(failures int, err error) time.Duration {
	var d time.Duration
	if IsPermanent(err) {
		d = c.opt.PermanentBackoff
		d -= time.Duration(c.rand() * float64(d) / 10)
	} else {
		d = c.opt.MinBackoff
		for i := 1; i < failures && d < c.opt.MaxBackoff; i++ {
			d *= 2
		}
		d = min(d, c.opt.MaxBackoff)
		d -= time.Duration(c.rand() * float64(d) / 2)
	}
	return max(d, retryAfterOf(err))
}

func (c *Cache) logFetch(s *cacheSnapshot, d time.Duration, err error) {
	if err == nil {
		c.log.Info().Str("route", c.opt.Name).
			Time("token_expires_at", s.tok.ExpiresAt).
			Time("next_refresh", s.refreshAt).
			Int64("dur_ms", d.Milliseconds()).
			Msg("IMS access token refreshed")
		return
	}
	level := zerolog.WarnLevel
	if IsPermanent(err) {
		level = zerolog.ErrorLevel
	}
	ev := c.log.WithLevel(level).Str("route", c.opt.Name).
		Int("attempt", s.failures).
		Time("next_attempt", s.nextAttempt).
		Int64("dur_ms", d.Milliseconds()).
		Str("error", err.Error())
	var e *Error
	if errors.As(err, &e) {
		ev = ev.Int("ims_status", e.StatusCode).Str("ims_error", sanitize(e.Code, maxCodeRunes))
	}
	if s.tok.IsZero() {
		ev.Msg("IMS access token fetch failed; no valid token")
		return
	}
	ev.Time("token_expires_at", s.tok.ExpiresAt).Msg("IMS access token refresh failed; serving the current token")
}

// Invalidate drops accessToken if it is the current token, because AEM
// rejected it, and starts fetching a new one (unless IMS asked us to wait).
// It reports whether it dropped the token: only the first call for a given
// token does, and none does within MinInvalidateInterval of the last one
// that did.
func (c *Cache) Invalidate(accessToken string) bool {
	if accessToken == "" {
		return false
	}
	now := c.opt.Now()
	c.mu.Lock()
	s := c.state.Load()
	if s.tok.AccessToken != accessToken {
		c.mu.Unlock()
		return false
	}
	if !s.lastInvalidated.IsZero() && now.Sub(s.lastInvalidated) < c.opt.MinInvalidateInterval {
		c.mu.Unlock()
		c.log.Warn().Str("route", c.opt.Name).Time("token_expires_at", s.tok.ExpiresAt).
			Int64("token_age_ms", now.Sub(s.fetchedAt).Milliseconds()).
			Msg("AEM rejected a freshly exchanged IMS token too; keeping it (check that the integration has access to this AEM environment)")
		return false
	}
	n := *s
	n.lastInvalidated = now
	n.tok, n.fetchedAt, n.refreshAt, n.usableUntil = Token{}, time.Time{}, time.Time{}, time.Time{}
	inBackoff := n.lastErr != nil && now.Before(n.nextAttempt)
	if !inBackoff {
		n.nextAttempt = time.Time{}
	}
	c.state.Store(&n)
	c.mu.Unlock()

	c.log.Info().Str("route", c.opt.Name).Time("token_expires_at", s.tok.ExpiresAt).
		Msg("AEM rejected the IMS access token; fetching a new one")
	if !inBackoff {
		c.group.DoChan(flightKey, c.fetchFunc(context.Background(), &n))
	}
	c.nudgeRun()
	return true
}

func (c *Cache) nudgeRun() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run keeps the token fresh until ctx is done: it fetches at once if there is
// no token, then again at each refresh point, and after failures per the
// backoff, so that requests never wait on IMS in steady state. Call it at
// most once, in its own goroutine.
func (c *Cache) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s := c.state.Load()
		now := c.opt.Now()
		floor := time.Duration(0)
		if due := c.due(s); !now.Before(due) {
			ch := c.group.DoChan(flightKey, c.fetchFunc(ctx, s))
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			s, now = c.state.Load(), c.opt.Now()
			// Whatever the plan says, never spin on IMS.
			floor = c.opt.MinBackoff
		}
		wait := max(c.due(s).Sub(now), floor)
		// Re-plan at least hourly, in case the wall clock jumped.
		timer.Reset(min(wait, time.Hour))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.wake:
		}
	}
}

// due is when Run should fetch next.
func (c *Cache) due(s *cacheSnapshot) time.Time {
	if s.tok.IsZero() {
		return s.nextAttempt
	}
	return maxTime(s.refreshAt, s.nextAttempt)
}

// CacheState describes a Cache for operators. It holds no secret.
type CacheState struct {
	// TokenIssuedAt and TokenExpiresAt describe the held token; zero if none.
	TokenIssuedAt, TokenExpiresAt time.Time
	// RefreshAt is when the held token becomes stale; zero if none.
	RefreshAt time.Time
	// Valid reports whether a usable token is held right now.
	Valid                    bool
	LastAttempt, LastSuccess time.Time
	// LastError is the last fetch's error, nil after a success. Safe to print.
	LastError           error
	ConsecutiveFailures int
	// NextAttempt is the earliest time of the next fetch.
	NextAttempt time.Time
	// Exchanges counts fetches attempted; Failures those that failed.
	Exchanges, Failures uint64
	// CertificateNotAfter is when the credentials' certificate expires, if
	// the source knows; zero otherwise.
	CertificateNotAfter time.Time
}

// State returns a snapshot of c for health checks and metrics.
func (c *Cache) State() CacheState {
	s := c.state.Load()
	st := CacheState{
		TokenIssuedAt:       s.tok.IssuedAt,
		TokenExpiresAt:      s.tok.ExpiresAt,
		RefreshAt:           s.refreshAt,
		Valid:               s.usable(c.opt.Now()),
		LastAttempt:         s.lastAttempt,
		LastSuccess:         s.lastSuccess,
		LastError:           s.lastErr,
		ConsecutiveFailures: s.failures,
		NextAttempt:         s.nextAttempt,
		Exchanges:           s.exchanges,
		Failures:            s.failuresTotal,
	}
	if cs, ok := c.src.Load().ts.(interface{ CertificateNotAfter() time.Time }); ok {
		st.CertificateNotAfter = cs.CertificateNotAfter()
	}
	return st
}

// CertificateNotAfter returns the source's certificate expiry, if it has one.
func (c *Cache) CertificateNotAfter() time.Time { return c.State().CertificateNotAfter }

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
