package guard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func mustGuard(t *testing.T, o Options) *Guard {
	t.Helper()
	g, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return g
}

// check runs g.Check on a request and returns the denial's reason, "" if
// admitted.
func check(g *Guard, method, path, remote string, header http.Header) string {
	r := httptest.NewRequest(method, "http://aemproxy.test"+path, nil)
	if remote != "" {
		r.RemoteAddr = remote
	}
	for k, v := range header {
		r.Header[k] = v
	}
	if d := g.Check(r, r.URL.Path); d != nil {
		return d.Reason
	}
	return ""
}

func TestAllowCIDRs(t *testing.T) {
	g := mustGuard(t, Options{AllowCIDRs: []string{"10.1.0.0/16", "192.168.7.9", "fd00::/8"}})
	for _, tc := range []struct {
		name, remote, want string
	}{
		{"inside network", "10.1.2.3:5555", ""},
		{"bare address", "192.168.7.9:1", ""},
		{"IPv4-mapped IPv6", "[::ffff:10.1.9.9]:80", ""},
		{"IPv6 network", "[fd00::1]:443", ""},
		{"outside network", "10.2.0.1:5555", "client_not_allowed"},
		{"neighbour of bare address", "192.168.7.10:1", "client_not_allowed"},
		{"loopback not listed", "127.0.0.1:9", "client_not_allowed"},
		{"unparseable remote", "pipe", "client_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := check(g, "GET", "/content", tc.remote, nil); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
	// X-Forwarded-For is never trusted.
	h := http.Header{"X-Forwarded-For": {"10.1.2.3"}}
	if got := check(g, "GET", "/", "203.0.113.5:1", h); got != "client_not_allowed" {
		t.Errorf("spoofed X-Forwarded-For: got %q; want client_not_allowed", got)
	}
}

func TestRequiredHeader(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		header     http.Header
		want       string
	}{
		{"value matches", "X-Requested-By: aemproxy", http.Header{"X-Requested-By": {"aemproxy"}}, ""},
		{"value differs", "X-Requested-By: aemproxy", http.Header{"X-Requested-By": {"evil"}}, "required_header_missing"},
		{"missing", "X-Requested-By: aemproxy", nil, "required_header_missing"},
		{"any value", "x-requested-by", http.Header{"X-Requested-By": {"x"}}, ""},
		{"any value, empty", "X-Requested-By", http.Header{"X-Requested-By": {""}}, "required_header_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := mustGuard(t, Options{RequiredHeader: tc.spec})
			if got := check(g, "GET", "/", "", tc.header); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
	g := mustGuard(t, Options{RequiredHeader: "X-Requested-By: aemproxy"})
	r := httptest.NewRequest("GET", "/", nil)
	if d := g.Check(r, "/"); d == nil || d.Status != http.StatusForbidden || !strings.Contains(d.Message, "X-Requested-By: aemproxy") {
		t.Errorf("denial: got %+v; want 403 naming X-Requested-By: aemproxy", d)
	}
}

const (
	plainKey  = "plain-key-0123456789abcdef"
	hashedKey = "hashed-key-fedcba9876543210"
)

func writeKeys(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sha(key string) string {
	d := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(d[:])
}

func TestAPIKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, path, "# clients of the intranet", "", plainKey, "  "+sha(hashedKey)+"  ")
	g := mustGuard(t, Options{APIKeysFile: path})
	for _, tc := range []struct {
		name   string
		header http.Header
		want   string
		status int
	}{
		{"plain key", http.Header{"X-Aemproxy-Key": {plainKey}}, "", 0},
		{"hashed key", http.Header{"X-Aemproxy-Key": {hashedKey}}, "", 0},
		{"absent", nil, "api_key_missing", 401},
		{"empty", http.Header{"X-Aemproxy-Key": {""}}, "api_key_missing", 401},
		{"wrong", http.Header{"X-Aemproxy-Key": {"not-a-key-0123456789"}}, "api_key_invalid", 403},
		{"the hash itself", http.Header{"X-Aemproxy-Key": {sha(hashedKey)}}, "api_key_invalid", 403},
		{"prefix of a key", http.Header{"X-Aemproxy-Key": {plainKey[:20]}}, "api_key_invalid", 403},
		{"two values", http.Header{"X-Aemproxy-Key": {plainKey, "x"}}, "api_key_invalid", 403},
		{"other header", http.Header{"X-Api-Key": {plainKey}}, "api_key_missing", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			d := g.Check(r, "/")
			switch {
			case tc.want == "" && d != nil:
				t.Errorf("got %q; want admitted", d.Reason)
			case tc.want != "" && (d == nil || d.Reason != tc.want || d.Status != tc.status):
				t.Errorf("got %+v; want %d %s", d, tc.status, tc.want)
			case d != nil && strings.Contains(d.Message, plainKey):
				t.Errorf("denial message repeats the key: %q", d.Message)
			}
			if v, ok := r.Header["X-Aemproxy-Key"]; ok {
				t.Errorf("key header still on the request: %q", v)
			}
		})
	}
}

func TestAPIKeyHeaderName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, path, plainKey)
	g := mustGuard(t, Options{APIKeysFile: path, APIKeyHeader: "x-intranet-key"})
	if got := check(g, "GET", "/", "", http.Header{"X-Intranet-Key": {plainKey}}); got != "" {
		t.Errorf("custom header: got %q; want admitted", got)
	}
	if got := check(g, "GET", "/", "", http.Header{"X-Aemproxy-Key": {plainKey}}); got != "api_key_missing" {
		t.Errorf("default header when another is named: got %q; want api_key_missing", got)
	}
}

// TestAPIKeyChallenge checks that a missing key gets a 401 with the
// WWW-Authenticate challenge RFC 9110 §11.6.1 requires, naming the route's
// header, and that no other denial carries one.
func TestAPIKeyChallenge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, path, plainKey)
	for _, tc := range []struct {
		name, header, want string
	}{
		{"default header", "", `APIKey realm="aemproxy", header="X-Aemproxy-Key"`},
		{"configured header", "x-intranet-key", `APIKey realm="aemproxy", header="X-Intranet-Key"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := mustGuard(t, Options{APIKeysFile: path, APIKeyHeader: tc.header, DenyPaths: []string{"/crx"}})
			deny := func(h http.Header, path string) *Denial {
				r := httptest.NewRequest("GET", path, nil)
				r.Header = h
				return g.Check(r, path)
			}
			d := deny(http.Header{}, "/")
			if d == nil || d.Status != http.StatusUnauthorized || d.Challenge != tc.want {
				t.Fatalf("missing key: got %+v; want 401 with challenge %s", d, tc.want)
			}
			keyHeader := http.CanonicalHeaderKey(tc.header)
			if keyHeader == "" {
				keyHeader = DefaultAPIKeyHeader
			}
			for name, d := range map[string]*Denial{
				"wrong key":   deny(http.Header{keyHeader: {"not-a-key-0123456789"}}, "/"),
				"denied path": deny(http.Header{keyHeader: {plainKey}}, "/crx"),
			} {
				if d == nil || d.Status != http.StatusForbidden || d.Challenge != "" {
					t.Errorf("%s: got %+v; want 403 without a challenge", name, d)
				}
			}
		})
	}
}

func TestAPIKeysReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, path, plainKey)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var logs bytes.Buffer
	g := mustGuard(t, Options{APIKeysFile: path, Now: clock, Logger: zerolog.New(&logs)})
	withKey := func(k string) http.Header { return http.Header{"X-Aemproxy-Key": {k}} }

	if got := check(g, "GET", "/", "", withKey(plainKey)); got != "" {
		t.Fatalf("initial key: got %q; want admitted", got)
	}
	// Rotate: the plain key goes, a hashed one comes (the size changes).
	writeKeys(t, path, "# rotated", sha(hashedKey))
	if got := check(g, "GET", "/", "", withKey(plainKey)); got != "" {
		t.Errorf("old key within the check interval: got %q; want still admitted", got)
	}
	advance(KeyCheckInterval + time.Second)
	if got := check(g, "GET", "/", "", withKey(plainKey)); got != "api_key_invalid" {
		t.Errorf("old key after rotation: got %q; want api_key_invalid", got)
	}
	if got := check(g, "GET", "/", "", withKey(hashedKey)); got != "" {
		t.Errorf("new key after rotation: got %q; want admitted", got)
	}

	// A broken file keeps the current keys.
	writeKeys(t, path, "sha256:zz")
	advance(KeyCheckInterval + time.Second)
	if got := check(g, "GET", "/", "", withKey(hashedKey)); got != "" {
		t.Errorf("after a broken file: got %q; want the previous keys kept", got)
	}
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Reload of a broken file: got %v; want an error naming line 1", err)
	}

	// Reload (SIGHUP) takes effect at once, without waiting for the clock.
	writeKeys(t, path, plainKey)
	if err := g.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := check(g, "GET", "/", "", withKey(plainKey)); got != "" {
		t.Errorf("after Reload: got %q; want admitted", got)
	}
	for _, k := range []string{plainKey, hashedKey} {
		if strings.Contains(logs.String(), k) {
			t.Errorf("logs hold an API key: %s", logs.String())
		}
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	writeKeys(t, short, "tooshort")
	_, err := New(Options{
		AllowCIDRs:     []string{"10.0.0.0/33", "nonsense"},
		APIKeysFile:    filepath.Join(dir, "missing"),
		RequiredHeader: "Bad Header: x",
		AllowMethods:   []string{"get"},
		DenyPaths:      []string{"system/console", "/a//b"},
	})
	if err == nil {
		t.Fatal("New: got nil error")
	}
	for _, want := range []string{`"10.0.0.0/33"`, `"nonsense"`, "missing", "Bad Header", `method "get"`, `"system/console"`, `"/a//b"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	if _, err := New(Options{APIKeysFile: short}); err == nil || strings.Contains(err.Error(), "tooshort") {
		t.Errorf("short plain key: got %v; want an error that does not repeat the key", err)
	}
	empty := filepath.Join(dir, "empty")
	writeKeys(t, empty, "# nothing yet")
	if _, err := New(Options{APIKeysFile: empty}); err == nil {
		t.Error("keys file without keys: got nil error")
	}
}

// aemDenyPaths is the deny list the documentation suggests for AEM.
var aemDenyPaths = []string{"/system/console", "/crx", "/bin/querybuilder.json", "/libs/granite/security", "/etc/packages"}

func TestMethodPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      Options
		method string
		want   string
	}{
		{"no policy", Options{}, "DELETE", ""},
		{"read only GET", Options{ReadOnly: true}, "GET", ""},
		{"read only HEAD", Options{ReadOnly: true}, "HEAD", ""},
		{"read only OPTIONS", Options{ReadOnly: true}, "OPTIONS", ""},
		{"read only POST", Options{ReadOnly: true}, "POST", "policy_denied"},
		{"read only PROPFIND", Options{ReadOnly: true}, "PROPFIND", "policy_denied"},
		{"allow listed", Options{AllowMethods: []string{"GET", "POST"}}, "POST", ""},
		{"allow unlisted", Options{AllowMethods: []string{"GET", "POST"}}, "PUT", "policy_denied"},
		{"allow is exact", Options{AllowMethods: []string{"GET"}}, "get", "policy_denied"},
		{"deny listed", Options{DenyMethods: []string{"DELETE"}}, "DELETE", "policy_denied"},
		{"deny lower case", Options{DenyMethods: []string{"DELETE"}}, "delete", "policy_denied"},
		{"deny unlisted", Options{DenyMethods: []string{"DELETE"}}, "GET", ""},
		{"deny wins over allow", Options{AllowMethods: []string{"GET", "DELETE"}, DenyMethods: []string{"DELETE"}}, "DELETE", "policy_denied"},
		{"read only and allow both apply", Options{ReadOnly: true, AllowMethods: []string{"GET", "POST"}}, "POST", "policy_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := mustGuard(t, tc.o)
			if got := check(g, tc.method, "/content", "", nil); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}

func TestPathPolicy(t *testing.T) {
	g := mustGuard(t, Options{AllowPaths: []string{"/content", "/bin", "/libs/", "/etc/packages"}, DenyPaths: aemDenyPaths})
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/content/wknd/en.html", true},
		{"/content", true},
		{"/content.infinity.json", true},
		{"/contentx", false},
		{"/Content/wknd", false}, // allow is case-sensitive, like AEM
		{"/bin/wcm/references", true},
		{"/bin/querybuilder.json", false},
		{"/bin/querybuilder.json;x=y", false},
		{"/bin/querybuilder.json/suffix", false},
		{"/bin/querybuilder.jsonx", true}, // another resource
		{"/libs/cq/core/content/welcome.html", true},
		{"/libs/granite/security/content/useradmin.html", false},
		{"/libs/granite/securityx", true},
		{"/etc/packages", false}, // deny wins over allow
		{"/etc/packages/my.zip", false},
		{"/etc/packages.json", false},
		{"/system/console", false},
		{"/system/console/bundles", false},
		{"/SYSTEM/console", false}, // deny is case-insensitive
		{"/system/Console.json", false},
		{"/system/console;x", false},
		{"/crx/de/index.jsp", false},
		{"/crx", false},
		{"/crxde", false}, // not under any allowed prefix
		{"/", false},
	} {
		if got := g.AllowedPath(tc.path); got != tc.want {
			t.Errorf("AllowedPath(%q): got %v; want %v", tc.path, got, tc.want)
		}
	}
	denyOnly := mustGuard(t, Options{DenyPaths: aemDenyPaths})
	for p, want := range map[string]bool{"/": true, "/crxde": true, "/crx/server": false, "/content": true, "/ſystem/console": true} {
		if got := denyOnly.AllowedPath(p); got != want {
			t.Errorf("deny only, AllowedPath(%q): got %v; want %v", p, got, want)
		}
	}
	root := mustGuard(t, Options{AllowPaths: []string{"/"}, DenyPaths: []string{"/"}})
	if root.AllowedPath("/content") {
		t.Error("deny / allowed /content")
	}
}

// FuzzPathPolicy checks the matcher against a direct statement of the rule:
// a path is refused by a deny prefix exactly when, lower-cased, it is the
// prefix or continues it with "/", "." or ";"; and deny always wins.
func FuzzPathPolicy(f *testing.F) {
	for _, s := range []string{"/system/console", "/SYSTEM/console.json", "/crx/de", "/content/../system/console", "/system//console", "/system/console;a", "/ſystem/console", "/"} {
		f.Add(s)
	}
	g, err := New(Options{AllowPaths: []string{"/system", "/content"}, DenyPaths: []string{"/system/console"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := g.AllowedPath(p)
		lower := asciiLower(p)
		denied := lower == "/system/console" || strings.HasPrefix(lower, "/system/console/") ||
			strings.HasPrefix(lower, "/system/console.") || strings.HasPrefix(lower, "/system/console;")
		allowed := false
		for _, a := range []string{"/system", "/content"} {
			if p == a || strings.HasPrefix(p, a+"/") || strings.HasPrefix(p, a+".") || strings.HasPrefix(p, a+";") {
				allowed = true
			}
		}
		if want := allowed && !denied; got != want {
			t.Errorf("AllowedPath(%q): got %v; want %v", p, got, want)
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func TestParseCIDR(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8": "10.0.0.0/8",
		"127.0.0.1":  "127.0.0.1/32",
		"::1":        "::1/128",
		"fd00::/8":   "fd00::/8",
	} {
		p, err := ParseCIDR(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseCIDR(%q): got %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "::ffff:10.0.0.0/104", "example.com"} {
		if _, err := ParseCIDR(bad); err == nil {
			t.Errorf("ParseCIDR(%q): got nil error", bad)
		}
	}
}

// BenchmarkCheck measures the per-request cost of a route with every
// control set.
func BenchmarkCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(plainKey+"\n"+sha(hashedKey)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	g, err := New(Options{
		AllowCIDRs:     []string{"10.0.0.0/8", "127.0.0.0/8"},
		APIKeysFile:    path,
		RequiredHeader: "X-Requested-By: aemproxy",
		DenyMethods:    []string{"DELETE"},
		DenyPaths:      aemDenyPaths,
	})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/content/wknd/en.model.json", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	b.ReportAllocs()
	for b.Loop() {
		r.Header = http.Header{"X-Requested-By": {"aemproxy"}, "X-Aemproxy-Key": {hashedKey}}
		if d := g.Check(r, r.URL.Path); d != nil {
			b.Fatal(d)
		}
	}
}

func TestParseKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		keys int
		want []string // substrings of the error; none means valid
	}{
		{"plain and hashed", plainKey + "\n" + sha(hashedKey) + "\n", 2, nil},
		{"comments, blanks and CRLF", "# a\r\n\r\n" + plainKey + "\r\n  # b\r\n", 1, nil},
		{"byte order mark", "\ufeff" + sha(hashedKey) + "\n", 1, nil},
		{"empty", "", 0, nil},
		{"every malformed line named", "# ok\n" + plainKey + "\nshort-key\nsha256:abc\n" + plainKey + "\nsha256:" + strings.Repeat("zz", 32) + "\n",
			0, []string{"line 3: a plain key must be at least 16 bytes", "line 4: want sha256:", "line 6: want sha256:"}},
		{"too many to name", strings.Repeat("short\n", 25), 0, []string{"line 1:", "line 10:", "and 15 more malformed lines"}},
		{"line too long", plainKey + "\n" + strings.Repeat("k", maxKeyLine+1) + "\n", 0, []string{"line 2: longer than 64 KiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseKeys([]byte(tc.data))
			if len(tc.want) == 0 {
				if err != nil || n != tc.keys {
					t.Fatalf("got %d keys, %v; want %d keys", n, err, tc.keys)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %d keys; want an error naming %q", n, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			for _, secret := range []string{plainKey, "short-key", "abc", "zzzz", "kkkk"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats the content %q of a line", err, secret)
				}
			}
			if strings.Contains(err.Error(), "line 11:") {
				t.Errorf("error %q names more than %d lines", err, maxLineErrors)
			}
		})
	}
}

// parseKeysError is what a keys file error may say: line numbers and fixed
// messages, nothing taken from the file.
var parseKeysError = regexp.MustCompile(`^(line \d+: (want sha256: and 64 hex digits|a plain key must be at least 16 bytes|longer than 64 KiB; is this an API keys file\? \(reading stopped there\))|and \d+ more malformed lines)$`)

// FuzzParseKeys checks that a keys file error never holds anything read
// from the file, and that an accepted file yields one key per line that is
// neither blank nor a comment.
func FuzzParseKeys(f *testing.F) {
	for _, s := range []string{plainKey + "\n" + sha(hashedKey), "# c\n\nshort\n", "sha256:" + strings.Repeat("A", 64), "\ufeffx", "a\r\nb\rc"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseKeys(data)
		if err != nil {
			for part := range strings.SplitSeq(err.Error(), "; ") {
				if !parseKeysError.MatchString(part) {
					t.Fatalf("error part %q is not a line number and a fixed message", part)
				}
			}
			return
		}
		want := 0
		for line := range strings.Lines(strings.TrimPrefix(string(data), "\ufeff")) {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				want++
			}
		}
		if n != want {
			t.Fatalf("got %d keys; want %d", n, want)
		}
	})
}
