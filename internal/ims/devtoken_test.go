package ims

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseDevToken(t *testing.T) {
	tok := devTokenAt(time.Now(), 24*time.Hour)
	tests := []struct {
		name string
		data string
	}{
		{"Developer Console JSON", string(devTokenJSON(t, tok))},
		{"JSON with spaces around the token", `{"accessToken":"  ` + tok + ` "}`},
		{"bare token", tok},
		{"bare token with CRLF", tok + "\r\n"},
		{"bare token with BOM", "\xef\xbb\xbf" + tok},
		{"Bearer prefix", "Bearer " + tok},
		{"lower-case bearer prefix", "bearer  " + tok + "\n"},
		{"JSON string", `"` + tok + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDevToken([]byte(tt.data))
			if err != nil || got != tok {
				t.Errorf("ParseDevToken() = %.20q…, %v; want the token", got, err)
			}
		})
	}
}

func TestParseDevTokenProblems(t *testing.T) {
	const secret = "eyJsecretsecret.abc"
	tests := []struct {
		name, data, want string
	}{
		{"empty", " \n", "empty file"},
		{"JSON without accessToken", `{"token":"` + secret + `"}`, "accessToken: missing"},
		{"accessToken not a string", `{"accessToken":1}`, "accessToken: not a string"},
		{"accessToken empty", `{"accessToken":""}`, "accessToken: empty"},
		{"accessToken with a space", `{"accessToken":"` + secret + ` x"}`, "accessToken: holds more than one word"},
		{"two lines", secret + "\n" + secret, "holds more than one word"},
		{"too short", "abc", "too short"},
		{"bad characters", secret + "{}", "contains characters an access token cannot hold"},
		{"broken JSON", `{"accessToken":"` + secret, "not valid JSON"},
		{"broken JSON string", `"` + secret, "not valid JSON"},
		{"too long", strings.Repeat("a", maxBearerLen+1), "longer than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDevToken([]byte(tt.data))
			if err == nil {
				t.Fatalf("ParseDevToken() = %q; want an error", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q echoes the token", err)
			}
		})
	}
}

func TestDevTokenExpiryFromPayload(t *testing.T) {
	clock := newFakeClock()
	created := clock.Now().Add(-time.Hour).Truncate(time.Millisecond)
	tests := []struct {
		name      string
		token     string
		known     bool
		expiresAt time.Time
	}{
		{"string claims", devTokenAt(created, 24*time.Hour), true, created.Add(24 * time.Hour)},
		{"number claims", fakeAccessToken(fmt.Sprintf(`{"created_at":%d,"expires_in":86400000}`, created.UnixMilli())), true, created.Add(24 * time.Hour)},
		{"no claims", fakeAccessToken(`{"type":"access_token"}`), false, farFuture},
		{"opaque", "sim-at-0123456789abcdef0123", false, farFuture},
		{"absurd lifetime", fakeAccessToken(fmt.Sprintf(`{"created_at":"%d","expires_in":"99999999999999"}`, created.UnixMilli())), false, farFuture},
		{"negative lifetime", fakeAccessToken(fmt.Sprintf(`{"created_at":"%d","expires_in":"-1"}`, created.UnixMilli())), false, farFuture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDevToken(tt.token, "dev.json", clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			exp, known := d.ExpiresAt()
			if known != tt.known || (known && !exp.Equal(tt.expiresAt)) {
				t.Errorf("ExpiresAt() = %v, %v; want %v, %v", exp, known, tt.expiresAt, tt.known)
			}
			tok, err := d.Token(t.Context())
			if err != nil || tok.AccessToken != tt.token || !tok.ExpiresAt.Equal(tt.expiresAt) || tok.Scheme != "" {
				t.Errorf("Token() = %v (scheme %q), %v; want the token expiring at %v", tok, tok.Scheme, err, tt.expiresAt)
			}
			if st := d.State(); !st.Valid || st.LastError != nil || (known && !st.TokenExpiresAt.Equal(tt.expiresAt)) || (!known && !st.TokenExpiresAt.IsZero()) {
				t.Errorf("State() = %+v; want valid, expiry %v (zero if unknown)", st, tt.expiresAt)
			}
		})
	}
}

func TestDevTokenExpired(t *testing.T) {
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tok := devTokenAt(created, 24*time.Hour)
	tests := []struct {
		name       string
		origin     string
		reloadable bool
		howTo      string
	}{
		{"file", "/home/dev/aem/dev-token.json", true, "and save it over /home/dev/aem/dev-token.json — aemproxy picks it up without a restart"},
		{"environment", "AEMPROXY_TOKEN", false, "and put it in AEMPROXY_TOKEN, then restart aemproxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: created.Add(24*time.Hour - time.Millisecond)}
			d, err := NewDevToken(tok, tt.origin, clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			d.reloadable, d.route = tt.reloadable, "author"
			if _, err := d.Token(t.Context()); err != nil {
				t.Fatalf("Token() 1 ms before expiry: %v", err)
			}
			clock.Advance(time.Millisecond)
			got, err := d.Token(t.Context())
			var ue *UnavailableError
			var de *DevTokenError
			if !errors.As(err, &ue) || !errors.As(err, &de) || !got.IsZero() {
				t.Fatalf("Token() at expiry = %v, %v; want an *UnavailableError wrapping a *DevTokenError", got, err)
			}
			want := `no valid IMS access token for route "author": the local development token expired at 2026-03-02T00:00:00Z; ` +
				"get a new one in the AEM Developer Console (Integrations → Local token → Get Local Development Token) " + tt.howTo
			if err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
			if strings.Contains(err.Error(), tok) {
				t.Error("error contains the token")
			}
			if st := d.State(); st.Valid || st.LastError == nil {
				t.Errorf("State() = %+v; want invalid with the error", st)
			}
			if d.Invalidate(tok) {
				t.Error("Invalidate() = true for a token with a known expiry; want false")
			}
		})
	}
}

func TestDevTokenUnknownExpiryRejectedByAEM(t *testing.T) {
	const tok = "sim-at-0123456789abcdef0123"
	d, err := NewDevToken(tok, "dev.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	d.reloadable = true
	if d.Invalidate("another-token") {
		t.Error("Invalidate(other token) = true")
	}
	if _, err := d.Token(t.Context()); err != nil {
		t.Fatalf("Token() before AEM's 401: %v", err)
	}
	if !d.Invalidate(tok) {
		t.Fatal("first Invalidate() = false; want true")
	}
	if d.Invalidate(tok) {
		t.Error("second Invalidate() = true; want false")
	}
	_, err = d.Token(t.Context())
	var de *DevTokenError
	if !errors.As(err, &de) || !de.ExpiredAt.IsZero() || !strings.Contains(err.Error(), "AEM rejected the local development token from dev.txt") ||
		!strings.Contains(err.Error(), "save it over dev.txt") {
		t.Errorf("Token() after AEM's 401: %v; want the rejection with the how-to", err)
	}
	if d.State().Valid {
		t.Error("State().Valid after rejection")
	}
}

func TestNewDevTokenRejects(t *testing.T) {
	for _, tok := range []string{"", "short", "two words here and there", "bad{chars}0123456789"} {
		_, err := NewDevToken(tok, "AEMPROXY_TOKEN", nil)
		if err == nil || !strings.HasPrefix(err.Error(), "local development token from AEMPROXY_TOKEN: ") {
			t.Errorf("NewDevToken(%q) error = %v; want one naming the origin", tok, err)
		}
	}
}

func TestDevTokenHotPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	d, err := NewDevToken(devTokenAt(time.Now(), time.Hour), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if allocs := testing.AllocsPerRun(1000, func() { _, _ = d.Token(ctx) }); allocs != 0 {
		t.Errorf("Token() allocates %v times; want 0", allocs)
	}
}
