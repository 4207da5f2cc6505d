package ims

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// verifyJWT is an independent RS256 verifier: it decodes the three parts by
// hand and checks the signature with crypto/rsa against the certificate, so
// that neither the signer nor the simulated IMS can hide a shared bug.
func verifyJWT(t *testing.T, token string, cert *x509.Certificate) (header map[string]any, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT has %d parts; want 3", len(parts))
	}
	decode := func(i int) []byte {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWT part %d is not unpadded base64url: %v", i, err)
		}
		return b
	}
	for i, v := range []*map[string]any{&header, &claims} {
		dec := json.NewDecoder(strings.NewReader(string(decode(i))))
		dec.UseNumber()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("JWT part %d is not a JSON object: %v", i, err)
		}
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, sum[:], decode(2)); err != nil {
		t.Fatalf("JWT signature does not verify against the certificate: %v", err)
	}
	return header, claims
}

func TestSignJWTClaims(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{IMSEndpoint: "ims-eu1.adobelogin.com"})
	if err != nil {
		t.Fatal(err)
	}
	data := mutate(t, c, func(in map[string]any) { in["metascopes"] = " ent_aem_cloud_api, ,ent_cloudmgr_sdk ,," })
	sc, err := ParseServiceCredentials(data)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 500e6, time.UTC)

	tests := []struct {
		name string
		ttl  time.Duration
	}{
		{"default", DefaultJWTLifetime},
		{"max", MaxJWTLifetime},
		{"one second", time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := sc.SignJWT(now, tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			header, claims := verifyJWT(t, token, c.Cert)
			if want := map[string]any{"alg": "RS256", "typ": "JWT"}; !maps.Equal(header, want) {
				t.Errorf("header = %v; want %v", header, want)
			}
			want := map[string]any{
				"iss": c.Org,
				"sub": c.TechnicalAccountID,
				"aud": "https://ims-eu1.adobelogin.com/c/" + c.ClientID,
				"exp": json.Number(fmt.Sprint(now.Add(tt.ttl).Unix())),
				"https://ims-eu1.adobelogin.com/s/ent_aem_cloud_api": true,
				"https://ims-eu1.adobelogin.com/s/ent_cloudmgr_sdk":  true,
			}
			if !maps.Equal(claims, want) {
				t.Errorf("claims = %v; want exactly %v", claims, want)
			}
		})
	}
}

func TestSignJWTRejects(t *testing.T) {
	_, sc := newCreds(t, sim.CredentialOptions{})
	now := time.Now()
	tests := []struct {
		name string
		edit func(c *ServiceCredentials)
		ttl  time.Duration
		want string
	}{
		{"zero ttl", func(*ServiceCredentials) {}, 0, "sign IMS JWT: lifetime 0s is outside (0, 24h0m0s]"},
		{"ttl over a day", func(*ServiceCredentials) {}, MaxJWTLifetime + time.Second, "sign IMS JWT: lifetime 24h0m1s is outside"},
		{"no key", func(c *ServiceCredentials) { c.PrivateKey = nil }, time.Minute, "sign IMS JWT: PrivateKey: missing"},
		{"no scopes", func(c *ServiceCredentials) { c.Metascopes = nil }, time.Minute, "sign IMS JWT: Metascopes: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *sc
			tt.edit(&c)
			_, err := c.SignJWT(now, tt.ttl)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("SignJWT error = %v; want prefix %q", err, tt.want)
			}
		})
	}
}

func TestSignJWTNormalisesEndpointSetInCode(t *testing.T) {
	c, sc := newCreds(t, sim.CredentialOptions{})
	sc.IMSEndpoint = "https://" + c.IMSEndpoint + "/"
	token, err := sc.SignJWT(time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, claims := verifyJWT(t, token, c.Cert)
	if want := "https://" + c.IMSEndpoint + "/c/" + c.ClientID; claims["aud"] != want {
		t.Errorf("aud = %v; want %s", claims["aud"], want)
	}
	keys := slices.Sorted(maps.Keys(claims))
	if want := []string{"aud", "exp", "https://" + c.IMSEndpoint + "/s/ent_aem_cloud_api", "iss", "sub"}; !slices.Equal(keys, want) {
		t.Errorf("claim names = %q; want %q", keys, want)
	}
}
