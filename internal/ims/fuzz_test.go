package ims

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The seeds are 4 KiB files holding an RSA key, slow to minimise: fuzz with
// a short -fuzzminimizetime (e.g. 5s) to spend the time fuzzing instead.
func FuzzParseServiceCredentials(f *testing.F) {
	for _, seed := range []struct {
		pkcs8   bool
		nl      string
		wrapper bool
	}{
		{false, "\r\n", true},
		{true, "\n", true},
		{false, `\n`, false},
	} {
		f.Add(seedCredentials(f, seed.pkcs8, seed.nl, seed.wrapper))
	}
	f.Add([]byte(`{"integration":{"privateKey":"-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----"}}`))
	f.Add([]byte(`{"integration":{"metascopes":[" a ",""],"technicalAccount":{"clientSecret":"s3cr3t-s3cr3t"}}}`))
	f.Add([]byte(`{"accessToken":"x"}`))
	f.Add([]byte(`[`))

	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseServiceCredentials(data)
		if err != nil {
			if got != nil {
				t.Fatal("credentials returned together with an error")
			}
			if secret := clientSecretIn(data); len(secret) >= 8 && strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q contains the client secret", err)
			}
			return
		}
		if got.PrivateKey == nil || got.ClientID == "" || got.ClientSecret == "" || got.Org == "" ||
			got.TechnicalAccountID == "" || got.IMSEndpoint == "" || len(got.Metascopes) == 0 {
			t.Fatalf("incomplete credentials without an error: %v", got)
		}
		if err := got.validate(); err != nil {
			t.Fatalf("parsed credentials do not validate: %v", err)
		}
		if strings.Contains(got.String(), got.ClientSecret.Reveal()) {
			t.Fatal("String() reveals the client secret")
		}
	})
}

// clientSecretIn digs the client secret out of a fuzzed file, if it has one.
func clientSecretIn(data []byte) string {
	var v struct {
		Integration struct {
			TechnicalAccount struct {
				ClientSecret string `json:"clientSecret"`
			} `json:"technicalAccount"`
		} `json:"integration"`
	}
	if json.Unmarshal(data, &v) != nil {
		return ""
	}
	return strings.TrimSpace(v.Integration.TechnicalAccount.ClientSecret)
}

func FuzzDecodeTokenResponse(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	created := now.Add(-time.Minute).UnixMilli()
	f.Add(200, "", []byte(`{"token_type":"bearer","access_token":"abc","expires_in":86399999}`), true)
	f.Add(200, "", []byte(`{"access_token":"`+fakeAccessToken(fmt.Sprintf(`{"created_at":"%d","expires_in":"86400000"}`, created))+`","expires_in":1}`), true)
	f.Add(200, "", []byte(`{"access_token":"`+fakeAccessToken(`{"created_at":1,"expires_in":"9e99"}`)+`","expires_in":"5"}`), false)
	f.Add(200, "", []byte(`{"access_token":"a.b.c","expires_in":-1}`), false)
	f.Add(200, "", []byte(`{"access_token":"x","expires_in":1e300}`), true)
	f.Add(429, "30", []byte(`{"error":"too_many_requests","error_description":"slow"}`), true)
	f.Add(503, "Sun, 01 Mar 2026 12:00:30 GMT", []byte(`<html>`), false)
	f.Add(400, "", []byte(`{"error":["x"]}`), true)

	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, millis bool) {
		unit := time.Second
		if millis {
			unit = time.Millisecond
		}
		header := http.Header{"Retry-After": {retryAfter}}
		tok, err := decodeTokenResponse(status, header, body, unit, now)
		if err != nil {
			if !tok.IsZero() {
				t.Fatal("token returned together with an error")
			}
			if e, ok := err.(*Error); ok {
				if status == http.StatusOK || e.StatusCode != status || e.RetryAfter < 0 || e.RetryAfter > maxRetryAfter {
					t.Fatalf("bad *Error %+v for status %d", e, status)
				}
				msg := e.Error()
				if strings.ContainsFunc(msg, func(r rune) bool { return r < ' ' || r == 0x7f }) {
					t.Fatalf("Error() %q contains control characters", msg)
				}
				if len(msg) > 2000 {
					t.Fatalf("Error() is %d bytes long", len(msg))
				}
			}
			return
		}
		if status != http.StatusOK || tok.AccessToken == "" {
			t.Fatalf("token %v from status %d", tok, status)
		}
		if !tok.ValidAt(now) || !tok.ExpiresAt.After(tok.IssuedAt) || tok.ExpiresAt.Sub(now) > maxTokenLifetime {
			t.Fatalf("token issued %v expiring %v is not valid at %v", tok.IssuedAt, tok.ExpiresAt, now)
		}
	})
}
