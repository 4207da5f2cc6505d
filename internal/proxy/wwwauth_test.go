package proxy

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aemproxy/aemproxy/internal/guard"
)

// TestAPIKeyMissingCarriesChallenge checks that the 401 for a missing API
// key carries WWW-Authenticate naming the route's key header (RFC 9110
// §11.6.1 requires one on every 401), that the 403s do not, and that no
// key ever appears in a response or the logs.
func TestAPIKeyMissingCarriesChallenge(t *testing.T) {
	const (
		key   = "www-auth-key-0123456789abcdef"
		wrong = "wrong-www-auth-key-0123456789"
	)
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	aem := newAEM(t, nil)
	p := newProxy(t, NewMetrics(nil), Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens(),
		Guard: newGuard(t, guard.Options{APIKeysFile: keys, APIKeyHeader: "x-intranet-key", DenyPaths: []string{"/crx"}})})

	for _, tc := range []struct {
		name, method, path, key string
		status                  int
		code                    string
		challenge               string
	}{
		{"no key", "GET", "/content/a.json", "", 401, "api_key_missing", `APIKey realm="aemproxy", header="X-Intranet-Key"`},
		{"no key, HEAD", "HEAD", "/content/a.json", "", 401, "", `APIKey realm="aemproxy", header="X-Intranet-Key"`},
		{"wrong key", "GET", "/content/a.json", wrong, 403, "api_key_invalid", ""},
		{"denied path", "GET", "/crx/de", key, 403, "policy_denied", ""},
		{"unclean path", "GET", "//x", key, 400, "unclean_path", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, p.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.key != "" {
				req.Header.Set("X-Intranet-Key", tc.key)
			}
			res := do(t, req)
			if tc.code != "" {
				jsonError(t, res, tc.status, tc.code)
			} else if res.StatusCode != tc.status {
				t.Fatalf("status = %d; want %d", res.StatusCode, tc.status)
			}
			if got := res.Header.Values("WWW-Authenticate"); tc.challenge == "" && len(got) != 0 {
				t.Errorf("WWW-Authenticate = %q; want none on a %d", got, tc.status)
			} else if tc.challenge != "" && (len(got) != 1 || got[0] != tc.challenge) {
				t.Errorf("WWW-Authenticate = %q; want exactly %q", got, tc.challenge)
			}
			for name, values := range res.Header {
				for _, v := range values {
					if strings.Contains(v, key) || strings.Contains(v, wrong) {
						t.Errorf("response header %s = %q holds an API key", name, v)
					}
				}
			}
			if b := string(res.body); strings.Contains(b, key) || strings.Contains(b, wrong) {
				t.Errorf("response body %q holds an API key", b)
			}
		})
	}
	if n := len(aem.requests()); n != 0 {
		t.Errorf("AEM received %d refused requests", n)
	}
	p.waitServed(t, 5)
	logs := p.logs.String()
	if !strings.Contains(logs, `"status":401`) {
		t.Fatalf("no 401 in the logs; the search below proves nothing:\n%s", logs)
	}
	if strings.Contains(logs, key) || strings.Contains(logs, wrong) {
		t.Errorf("logs hold an API key:\n%s", logs)
	}
}
