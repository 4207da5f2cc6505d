package sim

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestCredentialsJSON(t *testing.T) {
	notAfter := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	c, err := NewCredentials(CredentialOptions{NotAfter: notAfter, Metascopes: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cert.NotAfter.Equal(notAfter) || !c.Cert.PublicKey.(*rsa.PublicKey).Equal(&c.Key.PublicKey) {
		t.Errorf("certificate NotAfter %v or key does not match the options", c.Cert.NotAfter)
	}
	if c.IMSEndpoint != DefaultIMSEndpoint || !strings.HasSuffix(c.Org, "@AdobeOrg") || !strings.HasSuffix(c.ClientID, "-integration") {
		t.Errorf("defaults not applied: %v", c)
	}

	tests := []struct {
		name      string
		o         JSONOptions
		contains  []string
		notInJSON []string
	}{
		{"download", JSONOptions{}, []string{`"ok": true`, `"statusCode": 200`, `-----BEGIN RSA PRIVATE KEY-----\r\n`, `-----BEGIN CERTIFICATE-----\r\n`, `"metascopes": "a,b"`}, nil},
		{"pkcs8 lf", JSONOptions{KeyFormat: PKCS8, Newline: LF}, []string{`-----BEGIN PRIVATE KEY-----\n`}, []string{`\r\n`}},
		{"escaped", JSONOptions{Newline: EscapedLF}, []string{`-----BEGIN RSA PRIVATE KEY-----\\n`}, nil},
		{"bare", JSONOptions{NoStatus: true, NoPublicKey: true}, []string{`"integration"`}, []string{`"ok"`, `"statusCode"`, `publicKey`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := c.JSON(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatal("invalid JSON")
			}
			for _, s := range tt.contains {
				if !strings.Contains(string(data), s) {
					t.Errorf("JSON lacks %s", s)
				}
			}
			for _, s := range tt.notInJSON {
				if strings.Contains(string(data), s) {
					t.Errorf("JSON contains %s", s)
				}
			}
		})
	}
	if _, err := c.JSON(JSONOptions{KeyFormat: 9}); err == nil {
		t.Error("JSON with an unknown key format: no error")
	}
	if _, err := c.JSON(JSONOptions{Newline: 9}); err == nil {
		t.Error("JSON with an unknown newline form: no error")
	}
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, c.ClientSecret) || !strings.Contains(s, c.ClientID) {
			t.Errorf("printed credentials %q: want the client id and no secret", s)
		}
	}
}

func TestNewCredentialsRejects(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		o    CredentialOptions
	}{
		{"small key", CredentialOptions{Bits: 512}},
		{"inverted validity", CredentialOptions{NotBefore: now, NotAfter: now.Add(-time.Hour)}},
	}
	for _, tt := range tests {
		if _, err := NewCredentials(tt.o); err == nil {
			t.Errorf("%s: NewCredentials succeeded; want an error", tt.name)
		}
	}
}
