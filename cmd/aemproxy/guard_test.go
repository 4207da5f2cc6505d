package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/guard"
	"github.com/aemproxy/aemproxy/internal/proxy"
)

// TestGuardedRouteEndToEnd runs the program with a route that needs an API
// key and denies AEM's consoles: refused requests never reach AEM, the key
// header never reaches AEM, and the key never reaches the logs.
func TestGuardedRouteEndToEnd(t *testing.T) {
	const key = "e2e-api-key-0123456789abcdef"
	dir := t.TempDir()
	keys := filepath.Join(dir, "api-keys")
	if err := os.WriteFile(keys, []byte("# intranet clients\n"+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "aemproxy.yaml")
	// upstream and credentials come from the harness's flags, which apply
	// to the file's only route.
	yaml := `routes:
  - name: author
    access:
      api_keys_file: api-keys
      required_header: "X-Requested-By: aemproxy"
    policy:
      deny_methods: [DELETE]
      deny_paths: [/system/console, /crx, /bin/querybuilder.json]
    limits:
      max_body_bytes: 1024
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, harnessOptions{extra: []string{"--config", cfg}})
	h.waitReady(http.StatusOK)

	send := func(method, path, apiKey string) (*http.Response, string) {
		req, err := http.NewRequest(method, h.proxy+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Requested-By", "aemproxy")
		if apiKey != "" {
			req.Header.Set("X-Aemproxy-Key", apiKey)
		}
		return h.do(req)
	}
	for _, tc := range []struct {
		name, method, path, key string
		status                  int
		code                    string
	}{
		{"no key", "GET", "/content/a.json", "", 401, "api_key_missing"},
		{"wrong key", "GET", "/content/a.json", "not-the-key-0123456789", 403, "api_key_invalid"},
		{"denied path", "GET", "/system/console/bundles.json", key, 403, "policy_denied"},
		{"denied path, encoded", "GET", "/%63rx/de/index.jsp", key, 403, "policy_denied"},
		{"denied method", "DELETE", "/content/a", key, 403, "policy_denied"},
		{"traversal", "GET", "/content/%2e%2e/system/console", key, 400, "unclean_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := send(tc.method, tc.path, tc.key)
			if resp.StatusCode != tc.status || !strings.Contains(body, `"error":"`+tc.code+`"`) {
				t.Errorf("got %d %s; want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodGet, h.proxy+"/content/a.json", nil)
	req.Header.Set("X-Aemproxy-Key", key)
	if resp, body := h.do(req); resp.StatusCode != 403 || !strings.Contains(body, "X-Requested-By: aemproxy") {
		t.Errorf("without the required header: got %d %s; want 403 naming X-Requested-By: aemproxy", resp.StatusCode, body)
	}
	if n := h.aem.Count(); n != 0 {
		t.Fatalf("AEM received %d refused requests: %+v", n, h.aem.Requests())
	}

	resp, body := send("GET", "/content/a.json", key)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid key: got %d %s; want 200", resp.StatusCode, body)
	}
	got := h.lastAEMRequest()
	if v := got.Header.Values("X-Aemproxy-Key"); len(v) > 0 {
		t.Errorf("AEM received the client's API key header: %q", v)
	}
	if !strings.HasPrefix(got.Header.Get("Authorization"), "Bearer ") {
		t.Errorf("AEM got Authorization %q; want the route's bearer token", got.Header.Get("Authorization"))
	}

	h.stop()
	<-h.done
	h.done <- nil
	logs := h.logs.String()
	if strings.Contains(logs, key) || strings.Contains(logs, "not-the-key") {
		t.Errorf("logs contain an API key:\n%s", logs)
	}
	if !strings.Contains(logs, `"status":401`) || !strings.Contains(logs, `"status":403`) {
		t.Errorf("refusals were not logged; the search proves nothing:\n%s", logs)
	}
}

func TestWarnExposureNamesUnguardedRoutes(t *testing.T) {
	g, err := guard.New(guard.Options{AllowCIDRs: []string{"10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	policyOnly, err := guard.New(guard.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	public := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 8080}
	for _, tc := range []struct {
		name   string
		addr   net.Addr
		routes []proxy.Route
		want   string
	}{
		{"loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, []proxy.Route{{Name: "a"}}, ""},
		{"unguarded", public, []proxy.Route{{Name: "a"}, {Name: "b", Guard: g}, {Name: "c", Guard: policyOnly}}, `"routes":["a","c"]`},
		{"all guarded", public, []proxy.Route{{Name: "b", Guard: g}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			warnExposure(zerolog.New(&buf), tc.addr, tc.routes)
			switch {
			case tc.want == "" && buf.Len() > 0:
				t.Errorf("got warning %s; want none", buf.String())
			case tc.want != "" && (!strings.Contains(buf.String(), tc.want) || !strings.Contains(buf.String(), "no allow_cidrs/api_keys")):
				t.Errorf("got %q; want a warning with %s and \"no allow_cidrs/api_keys\"", buf.String(), tc.want)
			}
		})
	}
}
