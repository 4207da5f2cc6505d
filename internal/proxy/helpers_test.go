package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/ims"
)

// fakeTokens hands out "secret-token-1", "secret-token-2", ...: each
// Invalidate of the current token makes the next Token call return the
// next one, unless keep is set (as ims.Cache keeps a just-fetched token).
// It counts calls and fails on demand.
type fakeTokens struct {
	mu            sync.Mutex
	n             int
	issued        time.Time
	keep          bool
	err           error
	calls         int
	invalidations int
}

func (f *fakeTokens) Token(ctx context.Context) (ims.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return ims.Token{}, f.err
	}
	if err := ctx.Err(); err != nil {
		return ims.Token{}, err
	}
	return ims.Token{AccessToken: f.current(), IssuedAt: f.issued, ExpiresAt: f.issued.Add(24 * time.Hour)}, nil
}

func (f *fakeTokens) current() string { return fmt.Sprintf("secret-token-%d", f.n+1) }

func (f *fakeTokens) Invalidate(token string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidations++
	if f.keep || token != f.current() {
		return false
	}
	f.n++
	return true
}

func (f *fakeTokens) counts() (calls, invalidations int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.invalidations
}

// newTokens returns a fake whose tokens were issued an hour before now.
func newTokens() *fakeTokens {
	return &fakeTokens{issued: time.Now().Add(-time.Hour)}
}

// recordBodyLimit is how much of a request body the fake AEM keeps.
const recordBodyLimit = 1 << 20

// recorded is what the fake AEM received.
type recorded struct {
	Method     string
	Host       string
	RequestURI string
	Header     http.Header
	Body       []byte
}

// fakeAEM is an upstream that records every request (bodies only when they
// are small) and answers with handle.
type fakeAEM struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newAEM(t *testing.T, handle http.HandlerFunc) *fakeAEM {
	t.Helper()
	a := &fakeAEM{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := recorded{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Header: r.Header.Clone()}
		// Keep the body as the handler reads it, so that a handler can
		// watch a stream arrive; what it leaves unread is read after.
		var body capped
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(r.Body, &body), r.Body}
		if handle != nil {
			handle(w, r)
		}
		io.Copy(io.Discard, io.LimitReader(r.Body, recordBodyLimit))
		rec.Body = body.Bytes()
		a.mu.Lock()
		a.reqs = append(a.reqs, rec)
		a.mu.Unlock()
	}))
	t.Cleanup(a.Close)
	return a
}

// capped keeps the first recordBodyLimit bytes written to it.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := recordBodyLimit - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (a *fakeAEM) requests() []recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]recorded(nil), a.reqs...)
}

func (a *fakeAEM) url(t *testing.T) *url.URL { return mustURL(t, a.URL) }

func (a *fakeAEM) host() string { return strings.TrimPrefix(a.URL, "http://") }

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the JSON log lines with the given message.
func (s *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(s.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// testProxy is a Handler served by an httptest server.
type testProxy struct {
	*httptest.Server
	h    *Handler
	logs *syncBuffer
	// served receives after each request the handler finished.
	served chan struct{}
}

func newProxy(t *testing.T, metrics *Metrics, routes ...Route) *testProxy {
	t.Helper()
	return newProxyOptions(t, Options{Routes: routes, Metrics: metrics})
}

// newProxyOptions is newProxy with every option; the logger is the test's.
func newProxyOptions(t *testing.T, o Options) *testProxy {
	t.Helper()
	logs := &syncBuffer{}
	o.Logger = zerolog.New(logs).Level(zerolog.DebugLevel)
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{h: h, logs: logs, served: make(chan struct{}, 100)}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			select {
			case p.served <- struct{}{}:
			default:
			}
		}()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *testProxy) host() string { return strings.TrimPrefix(p.URL, "http://") }

// noRedirects is a client that shows redirects instead of following them
// and ignores proxy environment variables.
var noRedirects = &http.Client{
	Transport:     &http.Transport{Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

type response struct {
	*http.Response
	body []byte
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return response{res, b}
}

func get(t *testing.T, rawURL string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// rawRequest sends raw bytes on a new TCP connection to addr and reads one
// response.
func rawRequest(t *testing.T, addr, raw string) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", raw, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res, b}
}

// jsonError decodes an error response and checks its shape.
func jsonError(t *testing.T, res response, wantStatus int, wantCode string) errorBody {
	t.Helper()
	if res.StatusCode != wantStatus {
		t.Fatalf("status = %d; want %d (body %s)", res.StatusCode, wantStatus, res.body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var e errorBody
	if err := json.Unmarshal(res.body, &e); err != nil {
		t.Fatalf("error body %q: %v", res.body, err)
	}
	if e.Error != wantCode {
		t.Errorf("error = %q; want %q (message %q)", e.Error, wantCode, e.Message)
	}
	if e.Message == "" {
		t.Error("error message is empty")
	}
	if e.RequestID == "" || e.RequestID != res.Header.Get("X-Request-Id") {
		t.Errorf("request_id = %q; want the X-Request-Id header %q", e.RequestID, res.Header.Get("X-Request-Id"))
	}
	return e
}

// waitServed waits until the proxy handler has finished n more requests.
func (p *testProxy) waitServed(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-p.served:
		case <-timeout:
			t.Fatal("proxy handler did not finish")
		}
	}
}

type retryAfterError struct{ error }

func (retryAfterError) RetryAfter() time.Duration { return 2500 * time.Millisecond }

var errIMSRejected = errors.New("IMS rejected the client secret of integration cm-p1-e2 (401 invalid_client); check the credentials file")

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// recorder is a minimal ResponseWriter that keeps the status and counts
// the body, reusable across requests.
type recorder struct {
	h      http.Header
	status int
	n      int
}

func (w *recorder) Header() http.Header { return w.h }

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *recorder) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}
