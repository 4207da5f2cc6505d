package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestForwardInjectsToken(t *testing.T) {
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
	tokens := newTokens()
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: tokens})

	res := get(t, p.URL+"/content/dam/a%20b.json?x=1&y=2")
	if res.StatusCode != 200 || string(res.body) != `{"ok":true}` {
		t.Fatalf("got %d %q; want 200 {\"ok\":true}", res.StatusCode, res.body)
	}
	reqs := aem.requests()
	if len(reqs) != 1 {
		t.Fatalf("AEM got %d requests; want 1", len(reqs))
	}
	got := reqs[0]
	for _, c := range []struct{ name, got, want string }{
		{"Authorization", got.Header.Get("Authorization"), "Bearer secret-token-1"},
		{"Host", got.Host, aem.host()},
		{"request URI", got.RequestURI, "/content/dam/a%20b.json?x=1&y=2"},
		{"X-Forwarded-For", strings.Join(got.Header.Values("X-Forwarded-For"), ","), "127.0.0.1"},
		{"X-Forwarded-Proto", got.Header.Get("X-Forwarded-Proto"), "http"},
		{"X-Forwarded-Host", got.Header.Get("X-Forwarded-Host"), p.host()},
		{"X-Request-Id", got.Header.Get("X-Request-Id"), res.Header.Get("X-Request-Id")},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q; want %q", c.name, c.got, c.want)
		}
	}
	if res.Header.Get("X-Request-Id") == "" {
		t.Error("response has no X-Request-Id")
	}
}

func TestRequestIDSurvivesEarlyHints(t *testing.T) {
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("X-Request-Id", "upstream-id")
		io.WriteString(w, "ok")
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t)})
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/content", nil)
	req.Header.Set("X-Request-Id", "client-id")
	res := do(t, req)
	if got := res.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "client-id" {
		t.Errorf("X-Request-Id = %q; want [client-id]", got)
	}
}

func TestUpstreamDiesMidBody(t *testing.T) {
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/content/dam/x.bin" {
			return
		}
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "first bytes")
		http.NewResponseController(w).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})
	// The proxy may not have sent the headers yet when it aborts; either
	// way the client must see an error, never a short body as complete.
	res, err := noRedirects.Get(p.URL + "/content/dam/x.bin")
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Error("client got a truncated body without an error; want the connection aborted")
	}
	p.waitServed(t, 1)
	lines := p.logs.lines(t, "request")
	if len(lines) != 1 || lines[0]["aborted"] != true || lines[0]["status"] != 200.0 {
		t.Errorf("access log = %v; want one line with status 200 and aborted=true", lines)
	}
	// The handler still serves after an aborted exchange.
	if res := get(t, p.URL+"/content"); res.StatusCode != 200 {
		t.Errorf("next request: status %d; want 200", res.StatusCode)
	}
}

func TestNoTokenSourceSendsNoAuthorization(t *testing.T) {
	aem := newAEM(t, nil)
	p := newProxy(t, nil, Route{Name: "sdk", Upstream: aem.url(t)})
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/content", nil)
	req.SetBasicAuth("admin", "admin")
	do(t, req)
	if h, ok := aem.requests()[0].Header["Authorization"]; ok {
		t.Errorf("AEM got Authorization %q; want none", h)
	}
}

func TestSpoofedHeadersNeverReachAEM(t *testing.T) {
	aem := newAEM(t, nil)
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/content", nil)
	spoofed := map[string]string{
		"Authorization":       "Bearer stolen",
		"Proxy-Authorization": "Basic c3RvbGVu",
		"Cookie":              "login-token=stolen",
		"X-Forwarded-Host":    "evil.example",
		"X-Forwarded-For":     "10.9.9.9",
		"X-Forwarded-Proto":   "https",
		"Forwarded":           "for=10.9.9.9;host=evil.example",
	}
	for k, v := range spoofed {
		req.Header.Set(k, v)
	}
	do(t, req)
	got := aem.requests()[0].Header
	for k, v := range spoofed {
		for _, g := range got.Values(k) {
			if strings.Contains(g, v) || strings.Contains(g, "stolen") || strings.Contains(g, "evil") || strings.Contains(g, "10.9.9.9") {
				t.Errorf("AEM got spoofed %s: %q", k, g)
			}
		}
	}
	if v := got.Values("Authorization"); len(v) != 1 || v[0] != "Bearer secret-token-1" {
		t.Errorf("Authorization = %q; want exactly our bearer", v)
	}
	for _, k := range []string{"Cookie", "Proxy-Authorization", "Forwarded"} {
		if v, ok := got[k]; ok {
			t.Errorf("AEM got %s %q; want none", k, v)
		}
	}
	if v := got.Values("X-Forwarded-Host"); len(v) != 1 || v[0] != p.host() {
		t.Errorf("X-Forwarded-Host = %q; want [%s]", v, p.host())
	}
}

func TestForwardedHostCanBeTurnedOff(t *testing.T) {
	aem := newAEM(t, nil)
	off := false
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), ForwardedHost: &off})
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/", nil)
	req.Header.Set("X-Forwarded-Host", "evil.example")
	do(t, req)
	if v, ok := aem.requests()[0].Header["X-Forwarded-Host"]; ok {
		t.Errorf("X-Forwarded-Host = %q; want none", v)
	}
}

func TestHopByHopHeadersNeverPass(t *testing.T) {
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "hop")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "kept")
		io.WriteString(w, "ok")
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t)})
	// Raw, so that no client library tidies the headers first.
	res := rawRequest(t, p.Listener.Addr().String(), "GET /content HTTP/1.1\r\n"+
		"Host: "+p.host()+"\r\n"+
		"Connection: keep-alive, X-Client-Hop\r\n"+
		"X-Client-Hop: hop\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"X-Client-End-To-End: kept\r\n"+
		"\r\n")
	if res.StatusCode != 200 {
		t.Fatalf("status = %d; want 200", res.StatusCode)
	}
	got := aem.requests()[0].Header
	for _, k := range []string{"X-Client-Hop", "Keep-Alive", "Proxy-Connection"} {
		if v, ok := got[k]; ok {
			t.Errorf("AEM got hop-by-hop %s %q", k, v)
		}
	}
	if got.Get("X-Client-End-To-End") != "kept" {
		t.Errorf("AEM lost X-Client-End-To-End")
	}
	for _, k := range []string{"X-Upstream-Hop", "Keep-Alive"} {
		if v, ok := res.Header[k]; ok {
			t.Errorf("client got hop-by-hop %s %q", k, v)
		}
	}
	if res.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("client lost X-End-To-End")
	}
}

func TestCookies(t *testing.T) {
	for _, pass := range []bool{false, true} {
		t.Run(fmt.Sprintf("PassCookies=%v", pass), func(t *testing.T) {
			aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
				http.SetCookie(w, &http.Cookie{Name: "login-token", Value: "secret-login-token"})
			})
			p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(), PassCookies: pass})
			req, _ := http.NewRequest(http.MethodGet, p.URL+"/", nil)
			req.Header.Set("Cookie", "session=client-cookie")
			res := do(t, req)
			gotSet := res.Header.Get("Set-Cookie") != ""
			gotCookie := aem.requests()[0].Header.Get("Cookie") == "session=client-cookie"
			if gotSet != pass || gotCookie != pass {
				t.Errorf("Set-Cookie reached client: %v, Cookie reached AEM: %v; want %v for both", gotSet, gotCookie, pass)
			}
			if strings.Contains(p.logs.String(), "secret-login-token") || strings.Contains(p.logs.String(), "client-cookie") {
				t.Error("a cookie value reached the log")
			}
		})
	}
}

// unauthorizedUnless answers 401 to every bearer but want, and echoes the
// body otherwise. It reads the whole body first: net/http discards what a
// handler left unread once the response starts.
func unauthorizedUnless(want string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer "+want {
			w.Header().Set("WWW-Authenticate", `Bearer realm="aem"`)
			http.Error(w, "token expired", http.StatusUnauthorized)
			return
		}
		w.Write(body)
	}
}

func TestReplayAfter401(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes, under the 64 KiB cap
	for _, c := range []struct {
		name    string
		method  string
		body    io.Reader
		wantLen int
	}{
		{"no body", http.MethodGet, nil, 0},
		{"known length", http.MethodPost, bytes.NewReader(body), len(body)},
		{"chunked", http.MethodPost, io.MultiReader(bytes.NewReader(body)), len(body)}, // hides the length
		{"empty chunked", http.MethodPost, io.MultiReader(), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			aem := newAEM(t, unauthorizedUnless("secret-token-2"))
			tokens := newTokens()
			reg := prometheus.NewPedanticRegistry()
			m := NewMetrics(reg)
			p := newProxy(t, m, Route{Name: "author", Upstream: aem.url(t), Tokens: tokens})

			req, _ := http.NewRequest(c.method, p.URL+"/content/x.json", c.body)
			res := do(t, req)
			if res.StatusCode != 200 {
				t.Fatalf("status = %d; want 200 after a replay", res.StatusCode)
			}
			if c.wantLen > 0 && !bytes.Equal(res.body, body) {
				t.Errorf("echoed body is %d bytes; want the %d sent", len(res.body), len(body))
			}
			reqs := aem.requests()
			if len(reqs) != 2 {
				t.Fatalf("AEM got %d requests; want 2", len(reqs))
			}
			for i, r := range reqs {
				if len(r.Body) != c.wantLen || c.wantLen > 0 && !bytes.Equal(r.Body, body) {
					t.Errorf("attempt %d: AEM got a %d-byte body; want the %d bytes sent", i+1, len(r.Body), c.wantLen)
				}
			}
			if a, b := reqs[0].Header.Get("Authorization"), reqs[1].Header.Get("Authorization"); a != "Bearer secret-token-1" || b != "Bearer secret-token-2" {
				t.Errorf("Authorization = %q then %q; want token 1 then token 2", a, b)
			}
			calls, inv := tokens.counts()
			if calls != 2 || inv != 1 {
				t.Errorf("token calls = %d, invalidations = %d; want 2 and 1", calls, inv)
			}
			if got := testutil.ToFloat64(m.replays.WithLabelValues("author")); got != 1 {
				t.Errorf("replays_total = %v; want 1", got)
			}
			p.waitServed(t, 1)
			lines := p.logs.lines(t, "request")
			if len(lines) != 1 || lines[0]["replayed"] != true || lines[0]["status"] != 200.0 {
				t.Errorf("access log = %v; want one line with replayed=true status=200", lines)
			}
		})
	}
}

func TestNoReplay(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 4096)
	for _, c := range []struct {
		name            string
		handler         http.HandlerFunc
		limit           int64
		body            func() io.Reader
		keep            bool
		wantStatus      int
		wantAEM         int
		wantCalls       int
		wantInvalidated int
	}{
		{"403 never refreshes", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "forbidden", http.StatusForbidden) },
			0, nil, false, 403, 1, 1, 0},
		{"body over the cap", unauthorizedUnless("secret-token-2"),
			1024, func() io.Reader { return bytes.NewReader(big) }, false, 401, 1, 1, 1},
		{"chunked body over the cap", unauthorizedUnless("secret-token-2"),
			1024, func() io.Reader { return io.MultiReader(bytes.NewReader(big)) }, false, 401, 1, 1, 1},
		{"buffering off", unauthorizedUnless("secret-token-2"),
			-1, func() io.Reader { return bytes.NewReader(big) }, false, 401, 1, 1, 1},
		{"second 401 passes through", unauthorizedUnless("never"),
			0, nil, false, 401, 2, 2, 1},
		{"source keeps its token", unauthorizedUnless("secret-token-2"),
			0, nil, true, 401, 1, 2, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			aem := newAEM(t, c.handler)
			tokens := newTokens()
			tokens.keep = c.keep
			p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: tokens, ReplayBodyLimit: c.limit})

			method, body := http.MethodGet, io.Reader(nil)
			if c.body != nil {
				method, body = http.MethodPut, c.body()
			}
			req, _ := http.NewRequest(method, p.URL+"/content/x", body)
			res := do(t, req)
			if res.StatusCode != c.wantStatus {
				t.Errorf("status = %d; want %d", res.StatusCode, c.wantStatus)
			}
			reqs := aem.requests()
			if len(reqs) != c.wantAEM {
				t.Errorf("AEM got %d requests; want %d", len(reqs), c.wantAEM)
			}
			if c.body != nil && len(reqs) > 0 && !bytes.Equal(reqs[0].Body, big) {
				t.Errorf("AEM got a %d-byte body; want the %d bytes sent", len(reqs[0].Body), len(big))
			}
			calls, inv := tokens.counts()
			if calls != c.wantCalls || inv != c.wantInvalidated {
				t.Errorf("token calls = %d, invalidations = %d; want %d and %d", calls, inv, c.wantCalls, c.wantInvalidated)
			}
		})
	}
}

func TestTokenUnavailable(t *testing.T) {
	for _, c := range []struct {
		name           string
		err            error
		wantRetryAfter string
	}{
		{"plain", errIMSRejected, ""},
		{"with retry after", retryAfterError{errors.New("IMS is throttling this integration (429)")}, "3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			aem := newAEM(t, nil)
			p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: &fakeTokens{err: c.err}})
			res := get(t, p.URL+"/content")
			e := jsonError(t, res, http.StatusServiceUnavailable, "token_unavailable")
			if !strings.Contains(e.Message, c.err.Error()) {
				t.Errorf("message = %q; want it to contain the token source's %q", e.Message, c.err)
			}
			if e.Route != "author" {
				t.Errorf("route = %q; want author", e.Route)
			}
			if got := res.Header.Get("Retry-After"); got != c.wantRetryAfter {
				t.Errorf("Retry-After = %q; want %q", got, c.wantRetryAfter)
			}
			if n := len(aem.requests()); n != 0 {
				t.Errorf("AEM got %d requests; want none", n)
			}
		})
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := newProxy(t, nil, Route{Name: "author", Upstream: mustURL(t, "http://"+addr)})
	jsonError(t, get(t, p.URL+"/content"), http.StatusBadGateway, "upstream_unreachable")
}

func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	tr, err := NewTransport(TransportOptions{ResponseHeaderTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Transport: tr})
	jsonError(t, get(t, p.URL+"/content"), http.StatusGatewayTimeout, "upstream_timeout")
}

func TestClientGoneIsLoggedAs499(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	p := newProxy(t, m, Route{Name: "author", Upstream: aem.url(t)})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/content", nil)
	errc := make(chan error, 1)
	go func() {
		res, err := noRedirects.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached AEM")
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("client request succeeded; want it cancelled")
	}
	p.waitServed(t, 1)
	lines := p.logs.lines(t, "request")
	if len(lines) != 1 || lines[0]["status"] != 499.0 {
		t.Fatalf("access log = %v; want one line with status 499", lines)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("author", "GET", "499")); got != 1 {
		t.Errorf("requests_total{code=499} = %v; want 1", got)
	}
	if len(p.logs.lines(t, "client went away")) != 1 {
		t.Error("no debug line for the client going away")
	}
}

func TestLocationRewrite(t *testing.T) {
	blob := newAEM(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "binary") })
	const blobPath = "/container/asset.jpg?sv=2020&sig=abc%2Bdef"
	for _, c := range []struct {
		name     string
		route    func(aem string) Route
		location func(aem, blob string) string
		path     string
		want     func(proxy string) string
	}{
		{"same origin",
			func(string) Route { return Route{} },
			func(aem, _ string) string { return aem + "/content/x.html?a=1#top" },
			"/content/y",
			func(proxy string) string { return proxy + "/content/x.html?a=1#top" }},
		{"stripped prefix comes back",
			func(string) Route { return Route{PathPrefix: "/author", StripPrefix: true} },
			func(aem, _ string) string { return aem + "/content/x.html" },
			"/author/content/y",
			func(proxy string) string { return proxy + "/author/content/x.html" }},
		{"external URL",
			func(string) Route {
				return Route{PathPrefix: "/author", StripPrefix: true, ExternalURL: mustURL(t, "https://aem.corp.example/base/")}
			},
			func(aem, _ string) string { return aem + "/content/x.html?a=1" },
			"/author/content/y",
			func(string) string { return "https://aem.corp.example/base/author/content/x.html?a=1" }},
		{"path-absolute with stripped prefix",
			func(string) Route { return Route{PathPrefix: "/author", StripPrefix: true} },
			func(_, _ string) string { return "/libs/granite/core/content/login.html" },
			"/author/content/y",
			func(string) string { return "/author/libs/granite/core/content/login.html" }},
		{"upstream base path is removed",
			func(aem string) Route { return Route{Upstream: mustURL(t, aem+"/base")} },
			func(aem, _ string) string { return aem + "/base/content/x.html" },
			"/content/y",
			func(proxy string) string { return proxy + "/content/x.html" }},
		{"relative path stays",
			func(string) Route { return Route{PathPrefix: "/author", StripPrefix: true} },
			func(_, _ string) string { return "x.html" },
			"/author/content/y",
			func(string) string { return "x.html" }},
		{"foreign blob URL passes unchanged",
			func(string) Route { return Route{PathPrefix: "/author", StripPrefix: true} },
			func(_, blob string) string { return blob + blobPath },
			"/author/content/dam/asset.jpg/_jcr_content/renditions/original",
			func(string) string { return blob.URL + blobPath }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var aem *fakeAEM
			aem = newAEM(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", c.location(aem.URL, blob.URL))
				w.WriteHeader(http.StatusFound)
			})
			rt := c.route(aem.URL)
			rt.Name = "author"
			if rt.Upstream == nil {
				rt.Upstream = aem.url(t)
			}
			rt.Tokens = newTokens()
			p := newProxy(t, nil, rt)
			res := get(t, p.URL+c.path)
			if res.StatusCode != http.StatusFound {
				t.Fatalf("status = %d; want 302 passed through, not followed", res.StatusCode)
			}
			if got, want := res.Header.Get("Location"), c.want(p.URL); got != want {
				t.Errorf("Location = %q; want %q", got, want)
			}
			if n := len(aem.requests()); n != 1 {
				t.Errorf("AEM got %d requests; want 1 (redirects are not followed)", n)
			}
		})
	}
}

func TestBlobRedirectNeverGetsTheToken(t *testing.T) {
	blob := newAEM(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "binary") })
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, blob.URL+"/container/asset.jpg?sig=abc", http.StatusFound)
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})

	// A client that follows redirects, as most do.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}
	res, err := client.Get(p.URL + "/content/dam/asset.jpg/_jcr_content/renditions/original")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "binary" {
		t.Fatalf("body = %q; want the blob", b)
	}
	reqs := blob.requests()
	if len(reqs) != 1 {
		t.Fatalf("blob store got %d requests; want 1", len(reqs))
	}
	for k, v := range reqs[0].Header {
		if strings.Contains(strings.Join(v, " "), "secret-token") {
			t.Errorf("blob store got the token in %s", k)
		}
	}
	if _, ok := reqs[0].Header["Authorization"]; ok {
		t.Error("blob store got an Authorization header")
	}
}

func TestNotAnOpenProxy(t *testing.T) {
	aem := newAEM(t, nil)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	p := newProxy(t, m, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})
	addr := p.Listener.Addr().String()
	for _, c := range []struct {
		name, raw  string
		wantStatus int
		wantCode   string
	}{
		{"absolute-form for another host",
			"GET http://other.example/content HTTP/1.1\r\nHost: other.example\r\n\r\n", 421, "foreign_target"},
		{"absolute-form for AEM itself",
			"GET " + aem.URL + "/content HTTP/1.1\r\nHost: " + aem.host() + "\r\n\r\n", 421, "foreign_target"},
		{"CONNECT",
			"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", 405, "method_not_allowed"},
		{"CONNECT to AEM",
			"CONNECT " + aem.host() + " HTTP/1.1\r\nHost: " + aem.host() + "\r\n\r\n", 405, "method_not_allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			jsonError(t, rawRequest(t, addr, c.raw), c.wantStatus, c.wantCode)
		})
	}
	if n := len(aem.requests()); n != 0 {
		t.Errorf("AEM got %d requests; want none", n)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("foreign_target")); got != 2 {
		t.Errorf("rejected_requests_total{foreign_target} = %v; want 2", got)
	}

	// Absolute-form naming the proxy itself is an ordinary request.
	res := rawRequest(t, addr, "GET http://"+addr+"/content HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	if res.StatusCode != 200 || len(aem.requests()) != 1 {
		t.Errorf("absolute-form for the proxy: status %d, AEM got %d requests; want 200 and 1", res.StatusCode, len(aem.requests()))
	}
}

func TestTargetThatIsNotAPath(t *testing.T) {
	aem := newAEM(t, nil)
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t)})
	// http.Server answers OPTIONS * itself unless told not to, so call the
	// handler directly with what the server would parse.
	req, err := http.ReadRequest(bufioReader("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:1"
	w := &recorder{h: http.Header{}}
	p.h.ServeHTTP(w, req)
	if w.status != http.StatusBadRequest {
		t.Errorf("status = %d; want 400", w.status)
	}
	if n := len(aem.requests()); n != 0 {
		t.Errorf("AEM got %d requests; want none", n)
	}
}

func TestRouting(t *testing.T) {
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RequestURI) })
	base := func(name string) Route {
		return Route{Name: name, Upstream: mustURL(t, aem.URL+"/"+name)}
	}
	anyHost, dam, assets, assetsPort, author, authorDam := base("any"), base("dam"), base("assets"), base("assets-port"), base("author"), base("author-dam")
	dam.PathPrefix = "/content/dam"
	assets.Hosts = []string{"Assets.Example"}
	assetsPort.Hosts = []string{"assets.example:9000"}
	assetsPort.PathPrefix = "/content"
	author.PathPrefix, author.StripPrefix = "/author/", true
	authorDam.PathPrefix, authorDam.StripPrefix = "/author/content/dam", true
	p := newProxy(t, nil, anyHost, dam, assets, assetsPort, author, authorDam)

	for _, c := range []struct {
		host, path string
		want       string // path AEM saw, or "400"/"404"
	}{
		{"", "/content/x", "/any/content/x"},
		{"", "/content/dam", "/dam/content/dam"},
		{"", "/content/dam/a.jpg", "/dam/content/dam/a.jpg"},
		{"", "/content/damx", "/any/content/damx"},
		{"", "/content/dam/", "/dam/content/dam/"},
		{"", "/content/dam/a%2Fb.jpg?x=1", "/dam/content/dam/a%2Fb.jpg?x=1"},
		{"", "/author", "/author/"},
		{"", "/author/", "/author/"},
		{"", "/author/content/x", "/author/content/x"},
		{"", "/author/content/dam/y", "/author-dam/y"},
		{"", "/authorx", "/any/authorx"},
		{"", "/%61uthor/content/x", "/author/content/x"},
		{"assets.example", "/content/dam/x", "/assets/content/dam/x"},
		{"ASSETS.example:8080", "/content/dam/x", "/assets/content/dam/x"},
		{"assets.example:9000", "/content/dam/x", "/assets-port/content/dam/x"},
		{"assets.example:9000", "/libs/x", "/assets/libs/x"},
		{"other.example", "/content/dam/x", "/dam/content/dam/x"},
		// Ways out of a prefix.
		{"", "/content/dam/../../libs/x", "400"},
		{"", "/content/dam/%2e%2e/%2E%2E/libs", "400"},
		{"", "/content/dam%2F..%2F..%2Flibs", "400"},
		{"", "/content/dam/..;/libs", "400"},
		{"", "/content/dam/.;x/libs", "400"},
		{"", `/content/dam/..\libs`, "400"},
		{"", "/content/dam/./x", "400"},
		{"", "/content//dam/x", "400"},
		{"", "//content/dam/x", "400"},
		{"", "/author/../libs", "400"},
	} {
		t.Run(c.host+c.path, func(t *testing.T) {
			host := c.host
			if host == "" {
				host = p.host()
			}
			before := len(aem.requests())
			// Raw, so that the path arrives exactly as written.
			res := rawRequest(t, p.Listener.Addr().String(), "GET "+c.path+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
			switch c.want {
			case "400":
				jsonError(t, res, http.StatusBadRequest, "unclean_path")
				if n := len(aem.requests()); n != before {
					t.Errorf("AEM got a request for a refused path")
				}
			default:
				if res.StatusCode != 200 || string(res.body) != c.want {
					t.Errorf("got %d %q; want 200 %q", res.StatusCode, res.body, c.want)
				}
			}
		})
	}
}

func TestNoRoute(t *testing.T) {
	aem := newAEM(t, nil)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	p := newProxy(t, m, Route{Name: "author", Upstream: aem.url(t), Hosts: []string{"author.example"}, Tokens: newTokens()})
	e := jsonError(t, get(t, p.URL+"/content"), http.StatusNotFound, "no_route")
	if strings.Contains(e.Message, "author") || strings.Contains(e.Message, aem.host()) {
		t.Errorf("message %q names a route or upstream", e.Message)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("no_route")); got != 1 {
		t.Errorf("rejected_requests_total{no_route} = %v; want 1", got)
	}
}

func TestNewValidates(t *testing.T) {
	up := mustURL(t, "https://author-p1-e2.adobeaemcloud.com")
	for _, c := range []struct {
		name   string
		routes []Route
		want   []string
	}{
		{"no routes", nil, []string{"no routes"}},
		{"nil upstream", []Route{{Name: "a"}}, []string{`route "a": upstream: missing`}},
		{"bad scheme", []Route{{Name: "a", Upstream: mustURL(t, "ftp://x")}}, []string{`route "a": upstream`}},
		{"user info", []Route{{Name: "a", Upstream: mustURL(t, "https://u:p@x")}}, []string{`route "a": upstream`}},
		{"bad name", []Route{{Name: "a b", Upstream: up}}, []string{`route "a b": name`}},
		{"no name", []Route{{Upstream: up}}, []string{`route 0: name`}},
		{"prefix without slash", []Route{{Name: "a", Upstream: up, PathPrefix: "content"}}, []string{`route "a": path prefix`}},
		{"prefix with dots", []Route{{Name: "a", Upstream: up, PathPrefix: "/content/../libs"}}, []string{`route "a": path prefix`}},
		{"bad host", []Route{{Name: "a", Upstream: up, Hosts: []string{"http://x/"}}}, []string{`route "a": host`}},
		{"replay limit too large", []Route{{Name: "a", Upstream: up, ReplayBodyLimit: 1 << 30}}, []string{`route "a": replay body limit`}},
		{"duplicate name", []Route{{Name: "a", Upstream: up, PathPrefix: "/x"}, {Name: "a", Upstream: up}}, []string{`route "a": name used`}},
		{"same hosts and prefix",
			[]Route{{Name: "a", Upstream: up, Hosts: []string{"x", "Y"}, PathPrefix: "/c/"}, {Name: "b", Upstream: up, Hosts: []string{"y", "x"}, PathPrefix: "/c"}},
			[]string{`route "b": same hosts and path prefix as route "a"`}},
		{"same empty prefix", []Route{{Name: "a", Upstream: up}, {Name: "b", Upstream: up, PathPrefix: "/"}},
			[]string{`route "b": same hosts and path prefix as route "a"`}},
		{"every problem at once", []Route{{Name: "a"}, {Name: "b", Upstream: up, PathPrefix: "x"}},
			[]string{`route "a": upstream`, `route "b": path prefix`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(Options{Routes: c.routes})
			if err == nil {
				t.Fatal("New succeeded; want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	aem := newAEM(t, nil)
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t)})
	for _, c := range []struct {
		name, in string
		kept     bool
	}{
		{"sane", "abc-123_DEF.4:5/6+7=8@9", true},
		{"uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{"too long", strings.Repeat("a", maxRequestIDLen+1), false},
		{"space", "a b", false},
		{"quote", `a"b`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, p.URL+"/", nil)
			req.Header.Set("X-Request-Id", c.in)
			res := do(t, req)
			got := res.Header.Get("X-Request-Id")
			if (got == c.in) != c.kept || got == "" || !saneRequestID(got) {
				t.Errorf("X-Request-Id = %q for %q; want kept=%v and sane", got, c.in, c.kept)
			}
			up := aem.requests()
			if sent := up[len(up)-1].Header.Values("X-Request-Id"); len(sent) != 1 || sent[0] != got {
				t.Errorf("AEM got X-Request-Id %q; want [%s]", sent, got)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "login-token", Value: "secret-login-cookie"})
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello")
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/content/x.json?secret-query=1", strings.NewReader("secret-body"))
	req.Header.Set("Authorization", "Bearer secret-client-auth")
	req.Header.Set("Cookie", "login-token=secret-client-cookie")
	req.Header.Set("X-Request-Id", "log-test-1")
	do(t, req)
	p.waitServed(t, 1)

	lines := p.logs.lines(t, "request")
	if len(lines) != 1 {
		t.Fatalf("got %d access log lines; want 1:\n%s", len(lines), p.logs)
	}
	l := lines[0]
	for k, want := range map[string]any{
		"level": "info", "req_id": "log-test-1", "route": "author", "method": "POST",
		"path": "/content/x.json", "status": 201.0, "bytes": 5.0,
	} {
		if l[k] != want {
			t.Errorf("%s = %v; want %v", k, l[k], want)
		}
	}
	if _, ok := l["dur_ms"].(float64); !ok {
		t.Errorf("dur_ms = %v; want a number", l["dur_ms"])
	}
	for _, k := range []string{"upstream_status", "replayed"} {
		if _, ok := l[k]; ok {
			t.Errorf("%s present; want it only when it says something", k)
		}
	}
	for _, secret := range []string{"secret-token", "secret-client-auth", "secret-client-cookie", "secret-login-cookie", "secret-query", "secret-body"} {
		if strings.Contains(p.logs.String(), secret) {
			t.Errorf("log contains %q:\n%s", secret, p.logs)
		}
	}
}

func TestMetrics(t *testing.T) {
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "12345") })
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	if again := NewMetrics(reg); again.requests != m.requests {
		t.Error("a second NewMetrics on the same registry did not reuse the registered metrics")
	}
	p := newProxy(t, m, Route{Name: "author", Upstream: aem.url(t), Hosts: []string{"127.0.0.1"}})
	for range 3 {
		get(t, p.URL+"/content")
	}
	req, _ := http.NewRequest("BREW", p.URL+"/content", nil)
	do(t, req)
	req, _ = http.NewRequest(http.MethodGet, p.URL+"/content", nil)
	req.Host = "unknown.example"
	do(t, req)
	p.waitServed(t, 5)

	for _, c := range []struct {
		name string
		got  prometheus.Collector
		want float64
	}{
		{"requests GET 200", m.requests.WithLabelValues("author", "GET", "200"), 3},
		{"requests OTHER 200", m.requests.WithLabelValues("author", "OTHER", "200"), 1},
		{"bytes", m.bytes.WithLabelValues("author"), 20},
		{"in flight", m.inFlight.WithLabelValues("author"), 0},
		{"replays", m.replays.WithLabelValues("author"), 0},
		{"rejected no_route", m.rejected.WithLabelValues("no_route"), 1},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s = %v; want %v", c.name, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.duration, "aemproxy_request_duration_seconds"); n != len(methods) {
		t.Errorf("duration series = %d; want one per method label (%d)", n, len(methods))
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	// The method label never takes a client's word for it.
	if n := testutil.CollectAndCount(m.requests); n != 2 {
		t.Errorf("requests_total has %d series; want 2", n)
	}
}

func TestNilMetricsAreUsable(t *testing.T) {
	var m *Metrics
	m.reject("x")
	rm := m.forRoute("x")
	rm.start()
	rm.replay()
	rm.done("GET", 200, 1, 1)
	NewMetrics(nil).forRoute("x").done("GET", 200, 1, 1)
}

func TestFixedAuthorizationReplacesTheClients(t *testing.T) {
	aem := newAEM(t, nil)
	p := newProxy(t, nil, Route{Name: "sdk", Upstream: aem.url(t), Authorization: "Basic YWRtaW46YWRtaW4="})
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/content", nil)
	req.SetBasicAuth("someone", "else")
	do(t, req)
	if v := aem.requests()[0].Header.Values("Authorization"); len(v) != 1 || v[0] != "Basic YWRtaW46YWRtaW4=" {
		t.Errorf("Authorization = %q; want exactly the route's fixed value", v)
	}
}

func TestAPIKeyOnlyOnItsPaths(t *testing.T) {
	aem := newAEM(t, nil)
	p := newProxy(t, nil,
		Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(), APIKey: "cm-p1-e2-client"},
		Route{Name: "other", Upstream: aem.url(t), Tokens: newTokens(), APIKey: "k2", APIKeyPaths: []string{"/api/"}, PathPrefix: "/x", StripPrefix: true},
	)
	tests := []struct {
		path string
		want string
	}{
		{"/adobe/sites/cf/fragments", "cm-p1-e2-client"},
		{"/content/wknd.json", ""},
		{"/adobe", ""},
		{"/x/api/assets/a.json", "k2"}, // matched on the forwarded path, after the prefix is stripped
		{"/x/adobe/sites", ""},
	}
	for i, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, p.URL+tt.path, nil)
		req.Header.Set("X-Api-Key", "client-supplied")
		do(t, req)
		got := aem.requests()[i].Header.Values("X-Api-Key")
		switch {
		case tt.want == "" && len(got) != 0:
			t.Errorf("%s: X-Api-Key = %q; want none", tt.path, got)
		case tt.want != "" && (len(got) != 1 || got[0] != tt.want):
			t.Errorf("%s: X-Api-Key = %q; want [%s]", tt.path, got, tt.want)
		}
	}
}

func TestAPIKeyFuncFollowsReloads(t *testing.T) {
	aem := newAEM(t, nil)
	var key atomic.Value
	key.Store("client-a")
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(), APIKeyFunc: func() string { return key.Load().(string) }})
	for i, want := range []string{"client-a", "client-b", ""} {
		key.Store(want)
		get(t, p.URL+"/adobe/sites")
		got := aem.requests()[i].Header.Values("X-Api-Key")
		if (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0] != want)) {
			t.Errorf("request %d: X-Api-Key = %q; want %q", i, got, want)
		}
	}
}
