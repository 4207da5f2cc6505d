package ims

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"
)

// secretKeys are the JSON fields whose values must never be printed.
var secretKeys = map[string]bool{
	"client_secret": true, "client_secrets": true, "clientSecret": true, "password": true,
	"accessToken": true, "privateKey": true, "access_token": true,
}

// secretsIn digs every value under a secret key out of a fuzzed JSON file,
// and for a file that is not JSON, the file itself (it may be a token). Only
// values that could not appear in a message by chance are returned: at
// least 8 characters, a digit, no space.
func secretsIn(data []byte) []string {
	var out []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		if len(s) >= 8 && strings.ContainsFunc(s, unicode.IsDigit) && !strings.ContainsFunc(s, unicode.IsSpace) {
			out = append(out, s)
		}
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		add(string(data))
		return out
	}
	var walk func(v any, secret bool)
	walk = func(v any, secret bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, secret || secretKeys[k])
			}
		case []any:
			for _, e := range v {
				walk(e, secret)
			}
		case string:
			if secret {
				add(v)
			}
		}
	}
	walk(v, false)
	if s, ok := v.(string); ok {
		add(s)
	}
	return out
}

func addCredentialSeeds(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tok := devTokenAt(now, 24*time.Hour)
	proxy, other := newOAuthClient("Proxy"), newOAuthClient("Other")
	for _, s := range [][]byte{
		devTokenJSON(f, tok),
		[]byte(tok + "\n"),
		[]byte("Bearer " + tok),
		[]byte(`"` + tok + `"`),
		workspaceJSON(f, "O@AdobeOrg", proxy),
		workspaceJSON(f, "O@AdobeOrg", proxy, other),
		workspaceJSON(f, "O@AdobeOrg"),
		plainOAuthJSON(f, proxy),
		[]byte(`{"client_id":"a","client_secret":"s3cr3t-9","scopes":"a,b","ims_endpoint":"ims-eu1.adobelogin.com"}`),
		[]byte(`{"username":"admin","password":"adm1n-pw-123"}`),
		seedCredentials(f, false, "\r\n", true),
		[]byte(`{"integration":{}}`),
		[]byte(`{"project":{"workspace":{"details":{"credentials":[{"integration_type":"oauth_server_to_server","oauth_server_to_server":{"client_secrets":["s3cr3t-77"]}}]}}}}`),
		[]byte(`[1,2`),
		[]byte("\xef\xbb\xbf"),
		[]byte("a b"),
	} {
		f.Add(s)
	}
}

func FuzzDetectKind(f *testing.F) {
	addCredentialSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		kind, err := DetectKind(data)
		if err != nil {
			if kind != "" {
				t.Fatalf("kind %q returned with error %v", kind, err)
			}
			for _, s := range secretsIn(data) {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q contains file content %q", err, s)
				}
			}
			return
		}
		if _, err := ParseKind(string(kind)); err != nil || kind == "" {
			t.Fatalf("DetectKind() = %q, not a known kind", kind)
		}
		// A file that is not JSON is a development token exactly when
		// ParseDevToken takes it.
		if trimmed := trimFile(data); len(trimmed) > 0 && trimmed[0] != '{' && trimmed[0] != '[' {
			if _, perr := ParseDevToken(data); (perr == nil) != (kind == KindDevToken) {
				t.Fatalf("DetectKind() = %q but ParseDevToken error = %v", kind, perr)
			}
		}
	})
}

func FuzzParseDevToken(f *testing.F) {
	addCredentialSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseDevToken(data)
		if err != nil {
			if tok != "" {
				t.Fatal("token returned together with an error")
			}
			for _, s := range secretsIn(data) {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q contains file content %q", err, s)
				}
			}
			return
		}
		if len(tok) < minBearerLen || len(tok) > maxBearerLen || !isBearerToken(tok) {
			t.Fatalf("ParseDevToken() returned %q, not a bearer token", tok)
		}
		d, err := NewDevToken(tok, "fuzz", func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) })
		if err != nil {
			t.Fatalf("NewDevToken() of a parsed token: %v", err)
		}
		if strings.Contains(d.String(), tok) {
			t.Fatal("DevToken.String() reveals the token")
		}
		if exp, ok := d.ExpiresAt(); ok && !exp.After(time.Unix(0, 0)) {
			t.Fatalf("expiry %v read from the token", exp)
		}
	})
}

func FuzzParseOAuthCredentials(f *testing.F) {
	addCredentialSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"", "Proxy", "2001"} {
			c, err := ParseOAuthCredentials(data, name)
			if err != nil {
				if c != nil {
					t.Fatal("credentials returned together with an error")
				}
				for _, s := range secretsIn(data) {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error %q contains secret %q", err, s)
					}
				}
				continue
			}
			if err := c.validate(); err != nil {
				t.Fatalf("parsed credentials do not validate: %v", err)
			}
			other := *c
			other.ClientSecret = "different"
			if c.String() != other.String() {
				t.Fatal("String() depends on the client secret")
			}
			if _, err := NewClientCredentialsExchange(c, ExchangeOptions{Client: http.DefaultClient}); err != nil {
				t.Fatalf("exchange from parsed credentials: %v", err)
			}
		}
	})
}
