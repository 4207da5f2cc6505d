package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/aemproxy/aemproxy/internal/guard"
)

func newGuard(t *testing.T, o guard.Options) *guard.Guard {
	t.Helper()
	g, err := guard.New(o)
	if err != nil {
		t.Fatalf("guard.New: %v", err)
	}
	return g
}

// TestPolicyTraversalNeverReachesAEM sends the usual ways of dodging a
// deny list. Each is refused either by the router (the path is not clean:
// 400) or by the policy (the decoded path is denied: 403), and none reaches
// AEM.
func TestPolicyTraversalNeverReachesAEM(t *testing.T) {
	aem := newAEM(t, nil)
	m := NewMetrics(nil)
	g := newGuard(t, guard.Options{DenyPaths: []string{"/system/console", "/crx", "/bin/querybuilder.json"}})
	p := newProxy(t, m,
		Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(), Guard: g},
		Route{Name: "stage", Upstream: aem.url(t), PathPrefix: "/stage", StripPrefix: true, Guard: g},
	)
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/system/console", 403, "policy_denied"},
		{"/system/console/bundles", 403, "policy_denied"},
		{"/system/console.json", 403, "policy_denied"},
		{"/system/console;jsessionid=x", 403, "policy_denied"},
		{"/%73ystem/console", 403, "policy_denied"}, // decoded before the policy
		{"/system%2Fconsole", 403, "policy_denied"}, // %2F decodes to a separator
		{"/SYSTEM/console", 403, "policy_denied"},   // deny lists ignore case
		{"/bin/querybuilder.json?path=/home", 403, "policy_denied"},
		{"/stage/crx/de/index.jsp", 403, "policy_denied"},   // judged as AEM sees it, prefix stripped
		{"/content/../system/console", 400, "unclean_path"}, // the router refuses unclean paths
		{"/content/%2e%2e/system/console", 400, "unclean_path"},
		{"/system//console", 400, "unclean_path"},
		{"/content/..;/system/console", 400, "unclean_path"},
		{"/system/./console", 400, "unclean_path"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res := rawRequest(t, p.host(), "GET "+tc.path+" HTTP/1.1\r\nHost: "+p.host()+"\r\nConnection: close\r\n\r\n")
			jsonError(t, res, tc.status, tc.code)
		})
	}
	if n := len(aem.requests()); n != 0 {
		t.Errorf("AEM received %d requests; want none: %+v", n, aem.requests())
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("policy_denied")); got != 9 {
		t.Errorf("rejected{policy_denied} = %v; want 9", got)
	}
	res := get(t, p.URL+"/content/wknd/en.html")
	if res.StatusCode != 200 || len(aem.requests()) != 1 {
		t.Errorf("allowed path: status %d, AEM saw %d requests; want 200 and 1", res.StatusCode, len(aem.requests()))
	}
}

func TestAPIKeyHeaderNeverReachesAEM(t *testing.T) {
	const key = "intranet-key-0123456789"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	aem := newAEM(t, nil)
	m := NewMetrics(nil)
	p := newProxy(t, m, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(),
		Guard: newGuard(t, guard.Options{APIKeysFile: keys})})

	send := func(value string) response {
		req, _ := http.NewRequest("GET", p.URL+"/content/a", nil)
		if value != "" {
			req.Header.Set("X-Aemproxy-Key", value)
		}
		return do(t, req)
	}
	e := jsonError(t, send(""), 401, "api_key_missing")
	if e.Route != "author" {
		t.Errorf("route = %q; want author", e.Route)
	}
	jsonError(t, send("wrong-key-0123456789"), 403, "api_key_invalid")
	if n := len(aem.requests()); n != 0 {
		t.Fatalf("AEM received %d requests without a valid key", n)
	}
	if res := send(key); res.StatusCode != 200 {
		t.Fatalf("valid key: status %d; want 200 (%s)", res.StatusCode, res.body)
	}
	reqs := aem.requests()
	if len(reqs) != 1 {
		t.Fatalf("AEM received %d requests; want 1", len(reqs))
	}
	if v, ok := reqs[0].Header["X-Aemproxy-Key"]; ok {
		t.Errorf("AEM received the client's key header: %q", v)
	}
	if !strings.HasPrefix(reqs[0].Header.Get("Authorization"), "Bearer secret-token-") {
		t.Errorf("Authorization = %q; want the route's token", reqs[0].Header.Get("Authorization"))
	}
	p.waitServed(t, 3)
	if strings.Contains(p.logs.String(), key) || strings.Contains(p.logs.String(), "wrong-key") {
		t.Errorf("logs hold an API key:\n%s", p.logs.String())
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("api_key_missing")); got != 1 {
		t.Errorf("rejected{api_key_missing} = %v; want 1", got)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("api_key_invalid")); got != 1 {
		t.Errorf("rejected{api_key_invalid} = %v; want 1", got)
	}
}

// TestAllowCIDRsUseTheConnectionAddress drives the Handler directly with a
// crafted RemoteAddr, the address of the TCP peer.
func TestAllowCIDRsUseTheConnectionAddress(t *testing.T) {
	aem := newAEM(t, nil)
	h, err := New(Options{Routes: []Route{{Name: "author", Upstream: aem.url(t),
		Guard: newGuard(t, guard.Options{AllowCIDRs: []string{"10.20.0.0/16"}})}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, remote, xff string
		want              int
	}{
		{"inside", "10.20.1.2:40000", "", 200},
		{"outside", "10.21.1.2:40000", "", 403},
		{"outside, spoofing X-Forwarded-For", "192.0.2.1:40000", "10.20.1.2", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/content/a", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("status = %d; want %d (%s)", w.Code, tc.want, w.Body)
			}
			if tc.want == 403 && !strings.Contains(w.Body.String(), `"client_not_allowed"`) {
				t.Errorf("body = %s; want error client_not_allowed", w.Body)
			}
		})
	}
	if n := len(aem.requests()); n != 1 {
		t.Errorf("AEM received %d requests; want 1 (the allowed one)", n)
	}
}

func TestMaxBodyBytes(t *testing.T) {
	aem := newAEM(t, nil)
	m := NewMetrics(nil)
	p := newProxy(t, m,
		Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(), MaxBodyBytes: 100},
		Route{Name: "stream", Upstream: aem.url(t), PathPrefix: "/stream", MaxBodyBytes: 100, ReplayBodyLimit: -1},
	)
	post := func(path string, body io.Reader, length int64) response {
		req, _ := http.NewRequest("POST", p.URL+path, body)
		req.ContentLength = length
		return do(t, req)
	}
	jsonError(t, post("/content/a", strings.NewReader(strings.Repeat("x", 101)), 101), 413, "body_too_large")
	if n := len(aem.requests()); n != 0 {
		t.Fatalf("AEM received %d requests; want none for a Content-Length over the limit", n)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("body_too_large")); got != 1 {
		t.Errorf("rejected{body_too_large} = %v; want 1", got)
	}
	if res := post("/content/a", strings.NewReader(strings.Repeat("x", 100)), 100); res.StatusCode != 200 {
		t.Errorf("body at the limit: status %d; want 200", res.StatusCode)
	}
	// Without Content-Length (chunked), the body is cut where it passes the
	// limit: while buffering for replay, the proxy answers 413 itself.
	jsonError(t, post("/content/a", io.MultiReader(strings.NewReader(strings.Repeat("x", 150))), -1), 413, "body_too_large")
	// Streaming, the upstream request fails when the transport reads past
	// the limit; AEM never gets the whole body.
	res := post("/stream/a", io.MultiReader(strings.NewReader(strings.Repeat("y", 5000))), -1)
	if res.StatusCode != 413 && res.StatusCode != 502 {
		t.Errorf("streamed body over the limit: status %d; want 413 (or 502 if AEM answered first)", res.StatusCode)
	}
	for _, r := range aem.requests() {
		if len(r.Body) > 100 {
			t.Errorf("AEM received a body of %d bytes; want at most 100", len(r.Body))
		}
	}
}

func TestMaxConcurrent(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	m := NewMetrics(nil)
	p := newProxy(t, m, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(), MaxConcurrent: 2})

	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	for range 2 {
		wg.Go(func() { statuses <- get(t, p.URL+"/content/slow").StatusCode })
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the first two requests did not reach AEM")
		}
	}
	res := get(t, p.URL+"/content/third")
	jsonError(t, res, 503, "concurrency")
	if got := res.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q; want 1", got)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("concurrency")); got != 1 {
		t.Errorf("rejected{concurrency} = %v; want 1", got)
	}
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("held request: status %d; want 200", s)
		}
	}
	// The slots are free again.
	if res := get(t, p.URL+"/content/after"); res.StatusCode != 200 {
		t.Errorf("after release: status %d; want 200", res.StatusCode)
	}
}

func TestGuardOrder(t *testing.T) {
	// A request refused for its address learns nothing about keys or
	// policy; one without the required header is refused before its key is
	// looked at.
	aem := newAEM(t, nil)
	h, err := New(Options{Routes: []Route{{Name: "author", Upstream: aem.url(t),
		Guard: newGuard(t, guard.Options{AllowCIDRs: []string{"127.0.0.0/8"}, RequiredHeader: "X-Requested-By: aemproxy", ReadOnly: true})}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, remote, method, header, want string
	}{
		{"address first", "192.0.2.1:1", "DELETE", "", "client_not_allowed"},
		{"then required header", "127.0.0.1:1", "DELETE", "", "required_header_missing"},
		{"then policy", "127.0.0.1:1", "DELETE", "aemproxy", "policy_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/content/a", nil)
			r.RemoteAddr = tc.remote
			if tc.header != "" {
				r.Header.Set("X-Requested-By", tc.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if !strings.Contains(w.Body.String(), `"`+tc.want+`"`) || w.Code != 403 {
				t.Errorf("got %d %s; want 403 %s", w.Code, w.Body, tc.want)
			}
		})
	}
	if n := len(aem.requests()); n != 0 {
		t.Errorf("AEM received %d requests; want none", n)
	}
}
