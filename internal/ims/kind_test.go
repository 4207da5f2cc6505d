package ims

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

func TestDetectKind(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{Bits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	service, err := c.JSON(sim.JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bareIntegration, err := c.JSON(sim.JSONOptions{NoStatus: true})
	if err != nil {
		t.Fatal(err)
	}
	tok := devTokenAt(time.Now(), 24*time.Hour)
	oc := newOAuthClient("Proxy")
	tests := []struct {
		name string
		data string
		want Kind
	}{
		{"service credentials download", string(service), KindServiceCredentials},
		{"service credentials without status", string(bareIntegration), KindServiceCredentials},
		{"integration at the top level", `{"technicalAccount":{},"privateKey":"x"}`, KindServiceCredentials},
		{"broken integration is still service credentials", `{"integration":{}}`, KindServiceCredentials},
		{"dev token JSON", string(devTokenJSON(t, tok)), KindDevToken},
		{"bare dev token", tok, KindDevToken},
		{"bare token with newline and BOM", "\xef\xbb\xbf" + tok + "\n", KindDevToken},
		{"bearer-prefixed token", "Bearer " + tok, KindDevToken},
		{"opaque token", "sim-at-0123456789abcdef0123", KindDevToken},
		{"token as a JSON string", `"` + tok + `"`, KindDevToken},
		{"workspace with OAuth", string(workspaceJSON(t, "1@AdobeOrg", oc)), KindOAuth},
		{"workspace with two OAuth", string(workspaceJSON(t, "1@AdobeOrg", oc, newOAuthClient("Other"))), KindOAuth},
		{"plain OAuth", string(plainOAuthJSON(t, oc)), KindOAuth},
		{"basic", `{"username":"admin","password":"admin"}`, KindBasic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectKind([]byte(tt.data))
			if err != nil || got != tt.want {
				t.Errorf("DetectKind() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDetectKindRejects(t *testing.T) {
	const secret = "s3cr3t-Value-9f8e7d6c"
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"unknown object", `{"apiKey":"` + secret + `","other":1}`, []string{"service_credentials (", "oauth_server_to_server (", "dev_token (", "basic ("}},
		{"client id without secret", `{"client_id":"` + secret + `"}`, []string{"oauth_server_to_server ("}},
		{"OAuth with a private key", `{"client_id":"a","client_secret":"` + secret + `","privateKey":"k"}`, []string{"service_credentials ("}},
		{"two words", "hello " + secret, []string{"dev_token ("}},
		{"short word", "hello", []string{"dev_token ("}},
		{"token with bad characters", secret + "{}<>", []string{"dev_token ("}},
		{"array", `["` + secret + `"]`, []string{"basic ("}},
		{"project without OAuth", `{"project":{"workspace":{"details":{"credentials":[{"name":"k","integration_type":"apikey","api_key":{"client_id":"` + secret + `"}}]}}}}`, []string{"Adobe Developer Console project file", "integration_type oauth_server_to_server"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectKind([]byte(tt.data))
			if err == nil {
				t.Fatalf("DetectKind() = %q; want an error", got)
			}
			if !errors.Is(err, ErrUnknownKind) {
				t.Errorf("error %v; want ErrUnknownKind", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q; want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "hello") {
				t.Errorf("error %q echoes file content", err)
			}
		})
	}
}

func TestDetectKindMalformed(t *testing.T) {
	const secret = "s3cr3t-Value-9f8e7d6c"
	for _, data := range []string{"", "  \n", `{"client_secret":"` + secret, `[1,`} {
		_, err := DetectKind([]byte(data))
		if err == nil {
			t.Errorf("DetectKind(%q) succeeded; want an error", data)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q echoes file content", err)
		}
	}
}

func TestParseKind(t *testing.T) {
	for _, s := range []string{"", "service_credentials", "oauth_server_to_server", " dev_token ", "basic"} {
		if _, err := ParseKind(s); err != nil {
			t.Errorf("ParseKind(%q) error = %v", s, err)
		}
	}
	_, err := ParseKind("jwt")
	if err == nil || !strings.Contains(err.Error(), `"jwt"`) || !strings.Contains(err.Error(), "oauth_server_to_server") {
		t.Errorf("ParseKind(jwt) error = %v; want one naming it and the known kinds", err)
	}
}
