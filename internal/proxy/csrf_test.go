package proxy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/aemproxy/aemproxy/internal/ims"
)

// csrfAEM plays AEM's CSRF filter: token.json issues tokens, and writes
// without a valid one are refused with 403.
type csrfAEM struct {
	mu      sync.Mutex
	now     func() time.Time
	valid   map[string]bool
	n       int
	fetches []string // the Authorization of each token.json request

	life        time.Duration // exp of issued tokens; 0 issues opaque tokens
	tokenStatus int           // token.json's status; 0 means 200
	tokenBody   string        // token.json's body instead of a token
	refusal     string        // body of the 403 for a bad token
	forbidAll   string        // when set, every write is refused with this body (permissions)
	// pre, when set, may answer a request first (returning true).
	pre func(w http.ResponseWriter, r *http.Request) bool
}

func newCSRFAEM(clock *fakeClock) *csrfAEM {
	return &csrfAEM{now: clock.Now, valid: map[string]bool{}, life: 10 * time.Minute,
		refusal: `{"message":"the provided CSRF token is invalid"}`}
}

func (a *csrfAEM) handle(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	pre := a.pre
	a.mu.Unlock()
	if pre != nil && pre(w, r) {
		return
	}
	_, _ = io.Copy(io.Discard, r.Body) // as AEM does before its filters answer
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.URL.Path == csrfPath {
		a.fetches = append(a.fetches, r.Header.Get("Authorization"))
		switch {
		case a.tokenStatus != 0:
			w.WriteHeader(a.tokenStatus)
		case a.tokenBody != "":
			fmt.Fprint(w, a.tokenBody)
		default:
			a.n++
			tok := "opaque-csrf-" + strconv.Itoa(a.n)
			if a.life > 0 {
				payload := fmt.Sprintf(`{"exp":%d,"n":%d}`, a.now().Add(a.life).Unix(), a.n)
				tok = "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
			}
			a.valid[tok] = true
			fmt.Fprintf(w, `{"token":%q}`, tok)
		}
		return
	}
	if writeMethod(r.Method) {
		if a.forbidAll != "" {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, a.forbidAll)
			return
		}
		if !a.valid[r.Header.Get("CSRF-Token")] {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, a.refusal)
			return
		}
	}
	fmt.Fprint(w, "ok")
}

func (a *csrfAEM) set(f func(a *csrfAEM)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *csrfAEM) revoke() { a.set(func(a *csrfAEM) { a.valid = map[string]bool{} }) }

func (a *csrfAEM) fetchCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.fetches)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type csrfSetup struct {
	clock  *fakeClock
	aem    *csrfAEM
	up     *fakeAEM
	p      *testProxy
	tokens *fakeTokens
	m      *Metrics
}

func newCSRFSetup(t *testing.T, route func(r *Route)) *csrfSetup {
	t.Helper()
	s := &csrfSetup{clock: &fakeClock{t: time.Now()}, tokens: newTokens(), m: NewMetrics(prometheus.NewPedanticRegistry())}
	s.aem = newCSRFAEM(s.clock)
	s.up = newAEM(t, s.aem.handle)
	r := Route{Name: "author", Upstream: s.up.url(t), Tokens: s.tokens, CSRF: true}
	if route != nil {
		route(&r)
	}
	s.p = newProxyOptions(t, Options{Routes: []Route{r}, Metrics: s.m, Now: s.clock.Now})
	return s
}

func (s *csrfSetup) do(t *testing.T, method, body string, header ...string) response {
	t.Helper()
	req, _ := http.NewRequest(method, s.p.URL+"/content/dam/x.json", strings.NewReader(body))
	if body == "" {
		req.Body = nil
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

// writes returns the non-token.json requests AEM got.
func (s *csrfSetup) writes() []recorded {
	var out []recorded
	for _, r := range s.up.requests() {
		if r.RequestURI != csrfPath {
			out = append(out, r)
		}
	}
	return out
}

func TestCSRFTokenOnWrites(t *testing.T) {
	s := newCSRFSetup(t, nil)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if res := s.do(t, m, "x=1", "CSRF-Token", "client-made-up"); res.StatusCode != 200 {
			t.Fatalf("%s: status %d %s; want 200", m, res.StatusCode, res.body)
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		if res := s.do(t, m, ""); res.StatusCode != 200 {
			t.Fatalf("%s: status %d; want 200", m, res.StatusCode)
		}
	}
	if n := s.aem.fetchCount(); n != 1 {
		t.Errorf("token.json fetched %d times for four writes; want 1 (cached)", n)
	}
	if got := s.aem.fetches[0]; got != "Bearer secret-token-1" {
		t.Errorf("token.json fetched with Authorization %q; want the route's bearer", got)
	}
	ws := s.writes()
	if len(ws) != 7 {
		t.Fatalf("AEM got %d requests besides token.json; want 7", len(ws))
	}
	for _, r := range ws {
		got := r.Header.Values("Csrf-Token")
		if writeMethod(r.Method) {
			if len(got) != 1 || !s.aem.valid[got[0]] {
				t.Errorf("%s carried CSRF-Token %q; want one issued token in place of the client's", r.Method, got)
			}
		} else if len(got) != 0 {
			t.Errorf("%s carried CSRF-Token %q; reads need none", r.Method, got)
		}
	}
	if got := testutil.ToFloat64(s.m.csrf.WithLabelValues("author", "ok")); got != 1 {
		t.Errorf("csrf fetches ok = %v; want 1", got)
	}
}

func TestCSRFOffPassesTheClientsToken(t *testing.T) {
	s := newCSRFSetup(t, func(r *Route) { r.CSRF = false })
	s.aem.set(func(a *csrfAEM) { a.valid["client-token"] = true })
	if res := s.do(t, http.MethodPost, "x", "CSRF-Token", "client-token"); res.StatusCode != 200 {
		t.Fatalf("status %d; want 200 with the client's own token", res.StatusCode)
	}
	if n := s.aem.fetchCount(); n != 0 {
		t.Errorf("token.json fetched %d times on a route without csrf", n)
	}
}

func TestCSRFTokenExpiry(t *testing.T) {
	for _, c := range []struct {
		name string
		life time.Duration // of AEM's tokens; 0: opaque
		kept time.Duration // how long the proxy should keep one
	}{
		{"AEM's 10 minutes, kept at most 5", 10 * time.Minute, csrfMaxAge},
		{"3 minutes, kept until a minute before", 3 * time.Minute, 2 * time.Minute},
		{"already expiring, kept a moment", 30 * time.Second, csrfFreshFor},
		{"opaque, kept a minute", 0, csrfDefaultAge},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newCSRFSetup(t, nil)
			s.aem.set(func(a *csrfAEM) { a.life = c.life })
			s.do(t, http.MethodPost, "x")
			s.clock.Add(c.kept - time.Second)
			s.do(t, http.MethodPost, "x")
			if n := s.aem.fetchCount(); n != 1 {
				t.Fatalf("fetched %d times within the token's time; want 1", n)
			}
			s.clock.Add(2 * time.Second)
			s.do(t, http.MethodPost, "x")
			if n := s.aem.fetchCount(); n != 2 {
				t.Fatalf("fetched %d times after the token's time; want 2", n)
			}
		})
	}
}

func TestCSRFTokenFollowsTheCredential(t *testing.T) {
	s := newCSRFSetup(t, nil)
	s.do(t, http.MethodPost, "x")
	s.tokens.Invalidate("secret-token-1") // the IMS token was rotated
	s.do(t, http.MethodPost, "x")
	if got := s.aem.fetches; len(got) != 2 || got[1] != "Bearer secret-token-2" {
		t.Errorf("token.json fetches = %q; want a second one with the new bearer", got)
	}
}

func TestCSRFRefreshOn403(t *testing.T) {
	big := strings.Repeat("permission denied. ", 500) // longer than the peek
	for _, c := range []struct {
		name        string
		age         time.Duration // of the cached token when AEM refuses it
		refusal     string
		forbidAll   string
		wantStatus  int
		wantFetches int
		wantWrites  int
		wantBody    string
	}{
		{"403 naming CSRF: refreshed at once", 0, `the provided CSRF token is invalid`, "", 200, 2, 2, "ok"},
		{"bare 403 to an older token: refreshed", csrfFreshFor, `Forbidden`, "", 200, 2, 2, "ok"},
		{"bare 403 to a fresh token: permissions, passed on", csrfFreshFor / 2, big, "", 403, 1, 1, big},
		{"permissions after a refresh: one replay only", csrfFreshFor, "", big, 403, 2, 2, big},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newCSRFSetup(t, nil)
			s.do(t, http.MethodPost, "warm up")
			s.up.mu.Lock()
			s.up.reqs = nil
			s.up.mu.Unlock()
			s.aem.set(func(a *csrfAEM) { a.fetches, a.refusal, a.forbidAll = nil, c.refusal, c.forbidAll })
			s.aem.revoke()
			s.clock.Add(c.age)

			res := s.do(t, http.MethodPost, "payload")
			if res.StatusCode != c.wantStatus || string(res.body) != c.wantBody {
				t.Fatalf("status %d, %d-byte body; want %d with AEM's %d-byte body", res.StatusCode, len(res.body), c.wantStatus, len(c.wantBody))
			}
			if n := s.aem.fetchCount(); n != c.wantFetches-1 {
				t.Errorf("token.json fetched %d more times; want %d", n, c.wantFetches-1)
			}
			ws := s.writes()
			if len(ws) != c.wantWrites {
				t.Fatalf("AEM got the write %d times; want %d", len(ws), c.wantWrites)
			}
			for i, w := range ws {
				if string(w.Body) != "payload" {
					t.Errorf("attempt %d carried body %q; want the client's", i+1, w.Body)
				}
			}
			if len(ws) == 2 && ws[0].Header.Get("Csrf-Token") == ws[1].Header.Get("Csrf-Token") {
				t.Error("the replay carried the refused CSRF token again")
			}
			wantReplays := float64(c.wantWrites - 1)
			if got := testutil.ToFloat64(s.m.csrfRe.WithLabelValues("author")); got != wantReplays {
				t.Errorf("csrf_replays_total = %v; want %v", got, wantReplays)
			}
			s.p.waitServed(t, 2)
			lines := s.p.logs.lines(t, "request")
			if last := lines[len(lines)-1]; (last["csrf_replayed"] == true) != (c.wantWrites == 2) {
				t.Errorf("access log line %v: csrf_replayed should be %v", last, c.wantWrites == 2)
			}
		})
	}
}

func TestCSRFNoReplayOfAStreamedBody(t *testing.T) {
	s := newCSRFSetup(t, func(r *Route) { r.ReplayBodyLimit = 4 })
	s.do(t, http.MethodPost, "warm")
	s.aem.revoke()
	s.clock.Add(csrfFreshFor)
	res := s.do(t, http.MethodPost, "a body longer than the replay limit")
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d; want AEM's 403 passed on, the body being gone", res.StatusCode)
	}
	if n := len(s.writes()); n != 2 {
		t.Errorf("AEM got %d writes; want 2 (the warm-up and one)", n)
	}
}

func TestCSRFAfterTokenReplay(t *testing.T) {
	// AEM refuses bearer 1 on the write; the replay with bearer 2 carries
	// the CSRF token fetched for bearer 1, which AEM also refuses: the
	// proxy fetches one for bearer 2 and sends the write a third time.
	s := newCSRFSetup(t, nil)
	s.aem.set(func(a *csrfAEM) { a.refusal = "Forbidden" })
	refuse1 := true
	var mu sync.Mutex
	s.aem.set(func(a *csrfAEM) {
		a.pre = func(w http.ResponseWriter, r *http.Request) bool {
			mu.Lock()
			defer mu.Unlock()
			if r.Header.Get("Authorization") == "Bearer secret-token-1" && r.URL.Path != csrfPath && refuse1 {
				refuse1 = false
				s.aem.revoke()
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			return false
		}
	})
	res := s.do(t, http.MethodPost, "payload")
	if res.StatusCode != 200 {
		t.Fatalf("status %d %s; want 200", res.StatusCode, res.body)
	}
	if got := s.aem.fetches; len(got) != 2 || got[1] != "Bearer secret-token-2" {
		t.Errorf("token.json fetches = %q; want one per bearer", got)
	}
}

func TestCSRFFetchFailures(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"blocked by the dispatcher", 404, "", "AEM answered 404 for /libs/granite/csrf/token.json: is the path blocked by a dispatcher filter?"},
		{"account may not read it", 403, "", "AEM answered 403"},
		{"a login page", 0, "<html>login</html>", "is not JSON"},
		{"a token that would split a header", 0, `{"token":"a\r\nX-Evil: 1"}`, "not a valid header value"},
		{"a huge answer", 0, `{"token":"` + strings.Repeat("a", csrfMaxBody) + `"}`, "larger than 64 KiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newCSRFSetup(t, nil)
			s.aem.set(func(a *csrfAEM) { a.tokenStatus, a.tokenBody = c.status, c.body })
			res := s.do(t, http.MethodPost, "x")
			if res.StatusCode != http.StatusBadGateway || !bytes.Contains(res.body, []byte(`"error":"csrf_unavailable"`)) || !bytes.Contains(res.body, []byte(c.want)) {
				t.Fatalf("got %d %s; want 502 csrf_unavailable saying %q", res.StatusCode, res.body, c.want)
			}
			if bytes.Contains(res.body, []byte("secret-token")) {
				t.Errorf("the error shows the bearer token: %s", res.body)
			}
			if n := len(s.writes()); n != 0 {
				t.Errorf("AEM got the write %d times; want none", n)
			}
			if got := testutil.ToFloat64(s.m.csrf.WithLabelValues("author", "error")); got != 1 {
				t.Errorf("csrf fetch errors = %v; want 1", got)
			}
		})
	}
}

func TestCSRFFetch401RenewsTheBearer(t *testing.T) {
	s := newCSRFSetup(t, nil)
	s.aem.set(func(a *csrfAEM) {
		a.pre = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Authorization") == "Bearer secret-token-1" {
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			return false
		}
	})
	res := s.do(t, http.MethodPost, "x")
	if res.StatusCode != 200 {
		t.Fatalf("status %d %s; want 200 with the next bearer", res.StatusCode, res.body)
	}
	ws := s.writes()
	if len(ws) != 1 || ws[0].Header.Get("Authorization") != "Bearer secret-token-2" {
		t.Errorf("writes = %d; want one, with bearer 2", len(ws))
	}
}

func TestCSRFAnonymousGetsNoToken(t *testing.T) {
	s := newCSRFSetup(t, func(r *Route) { r.Tokens = nil })
	s.aem.set(func(a *csrfAEM) { a.tokenBody = `{}` })
	s.aem.set(func(a *csrfAEM) {
		a.pre = func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != csrfPath {
				fmt.Fprint(w, "anonymous ok")
				return true
			}
			return false
		}
	})
	if res := s.do(t, http.MethodPost, "x", "CSRF-Token", "client"); res.StatusCode != 200 {
		t.Fatalf("status %d; want 200", res.StatusCode)
	}
	if got := s.aem.fetches; len(got) != 1 || got[0] != "" {
		t.Errorf("token.json fetches = %q; want one without Authorization", got)
	}
	if ws := s.writes(); len(ws) != 1 || ws[0].Header.Get("Csrf-Token") != "" {
		t.Errorf("the write carried CSRF-Token %q; want none (AEM gave none, the client's is dropped)", ws[0].Header.Get("Csrf-Token"))
	}
}

func TestCSRFWithBasicAuth(t *testing.T) {
	s := newCSRFSetup(t, func(r *Route) { r.Tokens, r.Authorization = nil, ims.Secret("Basic YWRtaW46YWRtaW4=") })
	if res := s.do(t, http.MethodPost, "x"); res.StatusCode != 200 {
		t.Fatalf("status %d; want 200", res.StatusCode)
	}
	if got := s.aem.fetches; len(got) != 1 || got[0] != "Basic YWRtaW46YWRtaW4=" {
		t.Errorf("token.json fetched with %q; want the route's Basic credential", got)
	}
}

func TestCSRFOneFetchForConcurrentWrites(t *testing.T) {
	s := newCSRFSetup(t, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, s.p.URL+"/content/x", strings.NewReader("x"))
			res, err := noRedirects.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				errs <- res.Status
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := s.aem.fetchCount(); n != 1 {
		t.Errorf("token.json fetched %d times for 20 concurrent writes; want 1", n)
	}
}

func TestJWTExpiry(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	for _, c := range []struct {
		tok string
		ok  bool
	}{
		{"h." + enc([]byte(`{"exp":1700000000}`)) + ".s", true},
		{"h." + enc([]byte(`{"exp":1700000000.5}`)) + ".s", true},
		{"h." + enc([]byte(`{"exp":"soon"}`)) + ".s", false},
		{"h." + enc([]byte(`{}`)) + ".s", false},
		{"h." + enc([]byte(`{"exp":-1}`)) + ".s", false},
		{"h." + enc([]byte(`{"exp":1e300}`)) + ".s", false},
		{"h.%%%.s", false},
		{"opaque", false},
		{"a.b.c.d", false},
	} {
		if _, ok := jwtExpiry(c.tok); ok != c.ok {
			t.Errorf("jwtExpiry(%q) ok = %v; want %v", c.tok, ok, c.ok)
		}
	}
}
