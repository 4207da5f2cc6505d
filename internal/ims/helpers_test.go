package ims

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// fakeClock is a settable clock for code that takes a now func.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// newCreds generates credentials and parses their download, as a user's
// file would be.
func newCreds(t testing.TB, o sim.CredentialOptions) (*sim.Credentials, *ServiceCredentials) {
	t.Helper()
	c, err := sim.NewCredentials(o)
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.JSON(sim.JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ParseServiceCredentials(data)
	if err != nil {
		t.Fatal(err)
	}
	return c, sc
}

// recordedRequest is what the test IMS saw of one request.
type recordedRequest struct {
	Path        string
	ContentType string
	Form        url.Values
}

// testIMS is the simulated IMS behind an httptest server, recording each
// request's content type and form before the simulation checks them.
type testIMS struct {
	Creds *sim.Credentials
	SC    *ServiceCredentials
	IMS   *sim.IMS
	URL   *url.URL

	mu       sync.Mutex
	requests []recordedRequest
}

func newTestIMS(t testing.TB, now func() time.Time) *testIMS {
	t.Helper()
	creds, sc := newCreds(t, sim.CredentialOptions{Now: now})
	ims, err := sim.NewIMS(sim.IMSOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ims.Register(creds)
	ti := &testIMS{Creds: creds, SC: sc, IMS: ims}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err == nil {
			ti.mu.Lock()
			ti.requests = append(ti.requests, recordedRequest{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Form: r.PostForm})
			ti.mu.Unlock()
		}
		ims.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ti.URL, _ = url.Parse(srv.URL)
	return ti
}

func (ti *testIMS) Requests() []recordedRequest {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return append([]recordedRequest(nil), ti.requests...)
}

func (ti *testIMS) exchange(t testing.TB, now func() time.Time) *JWTExchange {
	t.Helper()
	x, err := NewJWTExchange(ti.SC, ExchangeOptions{BaseURL: ti.URL, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// srcFunc adapts a function to TokenSource.
type srcFunc func(ctx context.Context) (Token, error)

func (f srcFunc) Token(ctx context.Context) (Token, error) { return f(ctx) }
