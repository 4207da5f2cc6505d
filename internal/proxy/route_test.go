package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for _, c := range []struct {
		p    string
		want bool
	}{
		{"/", true},
		{"/content", true},
		{"/content/", true},
		{"/content/dam/a.b..c/x", true},
		{"/content/dam/...", true},
		{"/content/a;b=c/x", true},
		{`/content/a\b`, true},
		{"", false},
		{"content", false},
		{"*", false},
		{"//", false},
		{"//content", false},
		{"/content//x", false},
		{"/.", false},
		{"/..", false},
		{"/content/.", false},
		{"/content/./x", false},
		{"/content/../x", false},
		{"/content/..;/x", false},
		{"/content/..;jsessionid=1/x", false},
		{"/content/.;/x", false},
		{`/content\..\x`, false},
		{`/content/..\x`, false},
		{`/content/x\.`, false},
	} {
		if got := cleanPath(c.p); got != c.want {
			t.Errorf("cleanPath(%q) = %v; want %v", c.p, got, c.want)
		}
	}
}

// FuzzCleanPath checks that a path cleanPath accepts is one path.Clean
// leaves alone (but for a trailing slash), so routing on it cannot be
// fooled by dot segments.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b/", "/a/../b", "//a", "/a/./b", "/a/..;/b", `/a\..\b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !cleanPath(p) {
			return
		}
		want := path.Clean(p)
		if strings.HasSuffix(p, "/") && want != "/" {
			want += "/"
		}
		if want != p {
			t.Errorf("cleanPath(%q) = true; path.Clean gives %q", p, want)
		}
		for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
			seg, _, _ = strings.Cut(seg, ";")
			if seg == "." || seg == ".." {
				t.Errorf("cleanPath(%q) = true with dot segment", p)
			}
		}
	})
}

func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":      "example.com",
		"example.com:8080": "example.com",
		"[::1]:8080":       "[::1]",
		"[::1]":            "[::1]",
		"::1":              "::1",
		"127.0.0.1:80":     "127.0.0.1",
		"":                 "",
	} {
		if got := stripPort(in); got != want {
			t.Errorf("stripPort(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestHostPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, host string
		want          bool
	}{
		{"aem.example", "aem.example", true},
		{"aem.example", "AEM.Example:8080", true},
		{"aem.example", "aem.example.evil", false},
		{"aem.example:8080", "aem.example:8080", true},
		{"aem.example:8080", "aem.example", false},
		{"aem.example:8080", "aem.example:9090", false},
		{"[::1]", "[::1]:8080", true},
	} {
		p, err := parseHostPattern(c.pattern)
		if err != nil {
			t.Fatalf("parseHostPattern(%q): %v", c.pattern, err)
		}
		if got := p.matches(c.host); got != c.want {
			t.Errorf("%q matches %q = %v; want %v", c.pattern, c.host, got, c.want)
		}
	}
}

func TestForwardPath(t *testing.T) {
	for _, c := range []struct {
		prefix   string
		strip    bool
		in       string
		wantPath string
	}{
		{"/author", false, "/author/content/x", "/author/content/x"},
		{"/author", true, "/author/content/x", "/content/x"},
		{"/author", true, "/author", "/"},
		{"/author", true, "/author/", "/"},
		{"/author", true, "/author/a%2Fb", "/a%2Fb"},
		{"/author", true, "/%61uthor/a%2Fb", "/a%2Fb"},
		{"/author", true, "/author%2Fa", "/a"}, // the boundary itself was escaped
		{"", true, "/a%2Fb", "/a%2Fb"},
	} {
		rt := &route{prefix: c.prefix, strip: c.strip}
		u, err := url.Parse(c.in)
		if err != nil {
			t.Fatal(err)
		}
		out := &url.URL{}
		out.Path, out.RawPath = rt.forwardPath(u)
		if got := out.EscapedPath(); got != c.wantPath {
			t.Errorf("prefix %q strip %v: %q forwards as %q; want %q", c.prefix, c.strip, c.in, got, c.wantPath)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	up, err := checkBaseURL(mustURL(t, "https://Author-P1-E2.adobeaemcloud.com"))
	if err != nil {
		t.Fatal(err)
	}
	rt := &route{upstream: up, origin: normalizeOrigin(up.Scheme, up.Host)}
	for loc, want := range map[string]bool{
		"https://author-p1-e2.adobeaemcloud.com/x":     true,
		"HTTPS://author-p1-e2.adobeaemcloud.com:443/x": true,
		"http://author-p1-e2.adobeaemcloud.com/x":      false,
		"https://author-p1-e2.adobeaemcloud.com:8443/": false,
		"https://blob.core.windows.net/x":              false,
		"https://author-p1-e2.adobeaemcloud.com.evil/": false,
		"//author-p1-e2.adobeaemcloud.com/x":           true,
		"//blob.core.windows.net/x":                    false,
	} {
		if got := rt.sameOrigin(mustURL(t, loc)); got != want {
			t.Errorf("sameOrigin(%q) = %v; want %v", loc, got, want)
		}
	}
}

// TestAuthorizationIsBuiltOncePerToken checks that the header value is
// reused while the token stays the same, for every scheme, and rebuilt when
// it changes.
func TestAuthorizationIsBuiltOncePerToken(t *testing.T) {
	rt := &route{}
	for _, c := range []struct{ scheme, token, want string }{
		{"", "tok-1", "Bearer tok-1"},
		{"", "tok-2", "Bearer tok-2"},
		{"Basic", "YTpi", "Basic YTpi"},
	} {
		first := rt.authorization(c.scheme, c.token)
		if len(first) != 1 || first[0] != c.want {
			t.Fatalf("authorization(%q, %q) = %q; want [%q]", c.scheme, c.token, first, c.want)
		}
		if allocs := testing.AllocsPerRun(10, func() { rt.authorization(c.scheme, c.token) }); allocs != 0 {
			t.Errorf("authorization(%q, ...) allocates %v times per call once built; want 0", c.scheme, allocs)
		}
		if again := rt.authorization(c.scheme, c.token); &again[0] != &first[0] {
			t.Errorf("authorization(%q, ...) built a new value for the same token", c.scheme)
		}
	}
}
