package ims

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
	"github.com/rs/zerolog"
)

func TestParseServiceCredentialsFormats(t *testing.T) {
	notAfter := time.Date(2027, 2, 3, 4, 5, 6, 0, time.UTC)
	c, err := sim.NewCredentials(sim.CredentialOptions{NotAfter: notAfter, Metascopes: []string{"ent_aem_cloud_api", "ent_cloudmgr_sdk"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, kf := range []struct {
		name string
		f    sim.KeyFormat
	}{{"pkcs1", sim.PKCS1}, {"pkcs8", sim.PKCS8}} {
		for _, nl := range []struct {
			name string
			n    sim.Newline
		}{{"crlf", sim.CRLF}, {"lf", sim.LF}, {"escaped", sim.EscapedLF}} {
			for _, noStatus := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/nostatus=%v", kf.name, nl.name, noStatus)
				t.Run(name, func(t *testing.T) {
					data, err := c.JSON(sim.JSONOptions{KeyFormat: kf.f, Newline: nl.n, NoStatus: noStatus})
					if err != nil {
						t.Fatal(err)
					}
					got, err := ParseServiceCredentials(data)
					if err != nil {
						t.Fatalf("ParseServiceCredentials: %v", err)
					}
					checkParsed(t, got, c)
					if !got.CertificateNotAfter().Equal(notAfter) {
						t.Errorf("CertificateNotAfter() = %v; want %v", got.CertificateNotAfter(), notAfter)
					}
				})
			}
		}
	}
}

func checkParsed(t *testing.T, got *ServiceCredentials, want *sim.Credentials) {
	t.Helper()
	if got.IMSEndpoint != want.IMSEndpoint || got.ClientID != want.ClientID || got.ClientSecret.Reveal() != want.ClientSecret ||
		got.Org != want.Org || got.TechnicalAccountID != want.TechnicalAccountID || got.TechnicalAccountEmail != want.Email {
		t.Errorf("parsed fields = %+v; want those of %v", got, want)
	}
	if !slices.Equal(got.Metascopes, want.Metascopes) {
		t.Errorf("Metascopes = %q; want %q", got.Metascopes, want.Metascopes)
	}
	if got.PrivateKey == nil || !got.PrivateKey.Equal(want.Key) {
		t.Error("PrivateKey does not equal the generated key")
	}
}

func TestParseServiceCredentialsKeyPastedOnOneLine(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := c.PrivateKeyPEM(sim.PKCS1)
	data := mutate(t, c, func(in map[string]any) {
		in["privateKey"] = strings.ReplaceAll(string(keyPEM), "\n", " ")
		in["publicKey"] = strings.ReplaceAll(string(c.CertificatePEM()), "\n", "\t")
	})
	got, err := ParseServiceCredentials(data)
	if err != nil {
		t.Fatal(err)
	}
	checkParsed(t, got, c)
}

func TestParseServiceCredentialsBareIntegration(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := c.JSON(sim.JSONOptions{})
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	got, err := ParseServiceCredentials(top["integration"])
	if err != nil {
		t.Fatal(err)
	}
	checkParsed(t, got, c)
}

func TestParseServiceCredentialsWithoutPublicKey(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := c.JSON(sim.JSONOptions{NoPublicKey: true})
	got, err := ParseServiceCredentials(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Certificate != nil || !got.CertificateNotAfter().IsZero() {
		t.Errorf("Certificate = %v, CertificateNotAfter = %v; want nil and zero", got.Certificate, got.CertificateNotAfter())
	}
}

// mutate renders c's download and lets edit change the integration object.
func mutate(t *testing.T, c *sim.Credentials, edit func(in map[string]any)) []byte {
	t.Helper()
	data, err := c.JSON(sim.JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	edit(top["integration"].(map[string]any))
	out, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseServiceCredentialsProblems(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := c.PrivateKeyPEM(sim.PKCS1)
	pkcs8, _ := c.PrivateKeyPEM(sim.PKCS8)
	keyLines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")

	tests := []struct {
		name string
		edit func(in map[string]any)
		want []string
	}{
		{
			name: "key not PEM",
			edit: func(in map[string]any) { in["privateKey"] = keyLines[3] },
			want: []string{"integration.privateKey: not a PEM block"},
		},
		{
			name: "metascopes empty",
			edit: func(in map[string]any) { in["metascopes"] = " , ," },
			want: []string{"integration.metascopes: empty"},
		},
		{
			name: "certificate of another key",
			edit: func(in map[string]any) { in["publicKey"] = string(other.CertificatePEM()) },
			want: []string{"integration.publicKey: does not match integration.privateKey"},
		},
		{
			name: "everything at once",
			edit: func(in map[string]any) {
				delete(in, "imsEndpoint")
				in["metascopes"] = ""
				in["technicalAccount"] = map[string]any{"clientId": 42}
				in["org"] = "  "
				in["id"] = []any{}
				in["privateKey"] = "-----BEGIN RSA PRIVATE KEY-----\nAAAA"
				in["publicKey"] = string(keyPEM)
			},
			want: []string{
				"integration.imsEndpoint: missing",
				"integration.metascopes: empty",
				"integration.technicalAccount.clientId: not a string",
				"integration.technicalAccount.clientSecret: missing",
				"integration.id: not a string",
				"integration.org: empty",
				"integration.privateKey: PEM block has no matching END line",
				"integration.publicKey: holds a private key, not a certificate",
			},
		},
		{
			name: "endpoint with path",
			edit: func(in map[string]any) { in["imsEndpoint"] = "https://ims-na1.adobelogin.com/ims" },
			want: []string{"integration.imsEndpoint: \"https://ims-na1.adobelogin.com/ims\" is not a host name"},
		},
		{
			name: "endpoint over http",
			edit: func(in map[string]any) { in["imsEndpoint"] = "http://ims-na1.adobelogin.com" },
			want: []string{"integration.imsEndpoint: \"http://ims-na1.adobelogin.com\": want a host name"},
		},
		{
			name: "metascope with space",
			edit: func(in map[string]any) { in["metascopes"] = "ent_aem_cloud_api,bad scope" },
			want: []string{`integration.metascopes: entry "bad scope" contains a space`},
		},
		{
			name: "metascopes not a string",
			edit: func(in map[string]any) { in["metascopes"] = 7 },
			want: []string{"integration.metascopes: not a comma-separated string"},
		},
		{
			name: "technicalAccount not an object",
			edit: func(in map[string]any) { in["technicalAccount"] = "x" },
			want: []string{"integration.technicalAccount: not a JSON object"},
		},
		{
			name: "technicalAccount missing",
			edit: func(in map[string]any) { delete(in, "technicalAccount") },
			want: []string{"integration.technicalAccount: missing"},
		},
		{
			name: "keys swapped",
			edit: func(in map[string]any) { in["privateKey"], in["publicKey"] = in["publicKey"], in["privateKey"] },
			want: []string{
				"integration.privateKey: holds a certificate, not a private key (are privateKey and publicKey swapped?)",
				"integration.publicKey: holds a private key, not a certificate (are privateKey and publicKey swapped?)",
			},
		},
		{
			name: "encrypted key",
			edit: func(in map[string]any) {
				in["privateKey"] = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"
			},
			want: []string{"integration.privateKey: encrypted private keys are not supported"},
		},
		{
			name: "legacy encrypted key",
			edit: func(in map[string]any) {
				in["privateKey"] = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n"
			},
			want: []string{"integration.privateKey: encrypted private keys are not supported"},
		},
		{
			name: "EC key",
			edit: func(in map[string]any) {
				in["privateKey"] = "-----BEGIN EC PRIVATE KEY-----\nMIIB\n-----END EC PRIVATE KEY-----\n"
			},
			want: []string{"integration.privateKey: holds an EC key"},
		},
		{
			name: "other PEM type",
			edit: func(in map[string]any) {
				in["privateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nMIIB\n-----END OPENSSH PRIVATE KEY-----\n"
			},
			want: []string{`integration.privateKey: PEM block is "OPENSSH PRIVATE KEY"; want RSA PRIVATE KEY (PKCS#1) or PRIVATE KEY (PKCS#8)`},
		},
		{
			name: "key body corrupted",
			edit: func(in map[string]any) {
				in["privateKey"] = strings.Join([]string{keyLines[0], keyLines[1], keyLines[len(keyLines)-1]}, "\n")
			},
			want: []string{"integration.privateKey: not a valid PKCS#1 or PKCS#8 RSA private key"},
		},
		{
			name: "key body not base64",
			edit: func(in map[string]any) {
				in["privateKey"] = "-----BEGIN RSA PRIVATE KEY----- %%%% -----END RSA PRIVATE KEY-----"
			},
			want: []string{"integration.privateKey: PEM block body is not valid base64"},
		},
		{
			name: "PKCS#8 labelled PKCS#1 still works, bare public key refused",
			edit: func(in map[string]any) {
				in["privateKey"] = strings.ReplaceAll(string(pkcs8), "PRIVATE KEY", "RSA PRIVATE KEY")
				in["publicKey"] = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
			},
			want: []string{"integration.publicKey: holds a bare public key"},
		},
		{
			name: "certificate garbage",
			edit: func(in map[string]any) {
				in["publicKey"] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
			},
			want: []string{"integration.publicKey: not a valid X.509 certificate"},
		},
		{
			name: "publicKey not a string",
			edit: func(in map[string]any) { in["publicKey"] = true },
			want: []string{"integration.publicKey: not a string"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseServiceCredentials(mutate(t, c, tt.edit))
			if err == nil {
				t.Fatal("ParseServiceCredentials succeeded; want an error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("got %d problems:\n%v\nwant %d:\n%s", len(lines), err, len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i, w := range tt.want {
				if i < len(lines) && !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d = %q; want prefix %q", i, lines[i], w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("errors.As(%T, *FieldError) = false; want true", err)
			}
			assertNoSecret(t, err.Error(), c.ClientSecret, keyLines)
		})
	}
}

func TestParseServiceCredentialsWholeFile(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := c.JSON(sim.JSONOptions{})
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "empty file"},
		{"syntax", "{\n  \"integration\": {,\n}", "not valid JSON: invalid character ',' looking for beginning of object key string (line 2, column"},
		{"array", "[1]", "not a JSON object: the file holds a JSON array"},
		{"null", "null", "not a JSON object"},
		{"no integration", `{"ok": true, "statusCode": 200}`, "integration: missing"},
		{"integration not object", `{"integration": 3}`, "integration: not a JSON object"},
		{"top-level fields do not leak into integration", `{"imsEndpoint": "ims-na1.adobelogin.com", "integration": {}}`, "integration.imsEndpoint: missing"},
		{"local dev token", `{"ok": true, "accessToken": "eyJ..."}`, "accessToken: this is a local development token file"},
		{"developer console project", `{"project": {}}`, "project: this is an Adobe Developer Console project file"},
		{"ok false", strings.Replace(string(good), `"ok": true`, `"ok": false`, 1), "ok: false"},
		{"ok not bool", strings.Replace(string(good), `"ok": true`, `"ok": "yes"`, 1), "ok: not a boolean"},
		{"status 403", strings.Replace(string(good), `"statusCode": 200`, `"statusCode": 403`, 1), "statusCode: is 403, want 200"},
		{"status not int", strings.Replace(string(good), `"statusCode": 200`, `"statusCode": "200"`, 1), "statusCode: not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseServiceCredentials([]byte(tt.data))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("ParseServiceCredentials error = %v; want prefix %q", err, tt.want)
			}
		})
	}
}

func TestNormalizeIMSEndpoint(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"ims-na1.adobelogin.com", "ims-na1.adobelogin.com", true},
		{" https://IMS-NA1.adobelogin.com/ ", "ims-na1.adobelogin.com", true},
		{"HTTPS://ims-na1.adobelogin.com", "ims-na1.adobelogin.com", true},
		{"localhost:8443", "localhost:8443", true},
		{"ims-na1.adobelogin.com/ims", "", false},
		{"ims-na1.adobelogin.com?x=1", "", false},
		{"user@ims-na1.adobelogin.com", "", false},
		{"ftp://ims-na1.adobelogin.com", "", false},
		{"https://", "", false},
		{"ims na1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeIMSEndpoint(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("normalizeIMSEndpoint(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestLoadServiceCredentials(t *testing.T) {
	c, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, _ := c.JSON(sim.JSONOptions{})
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	huge := filepath.Join(dir, "huge.json")
	for path, content := range map[string][]byte{
		good: data,
		bad:  []byte(`{"integration": {}}`),
		huge: make([]byte, maxCredentialsBytes+1),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	got, err := LoadServiceCredentials(good)
	if err != nil {
		t.Fatal(err)
	}
	checkParsed(t, got, c)

	tests := []struct {
		path string
		want string
	}{
		{filepath.Join(dir, "missing.json"), "load service credentials: open " + filepath.Join(dir, "missing.json")},
		{bad, "load service credentials " + bad + ": integration.imsEndpoint: missing"},
		{huge, "load service credentials " + huge + ": file is larger than 1 MiB"},
	}
	for _, tt := range tests {
		_, err := LoadServiceCredentials(tt.path)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("LoadServiceCredentials(%s) error = %v; want prefix %q", filepath.Base(tt.path), err, tt.want)
		}
	}
}

func TestServiceCredentialsNeverPrintSecrets(t *testing.T) {
	c, sc := newCreds(t, sim.CredentialOptions{})
	keyPEM, _ := c.PrivateKeyPEM(sim.PKCS1)
	keyLines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	d := sc.PrivateKey.D.String()

	var logs syncBuffer
	logger := zerolog.New(&logs)
	logger.Info().Object("creds", sc).Interface("iface", sc).Msg("x")
	js, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":  fmt.Sprintf("%v", sc),
		"%+v": fmt.Sprintf("%+v", *sc),
		"%#v": fmt.Sprintf("%#v", sc),
		//lint:ignore S1025 the test is about what fmt's %s verb prints
		"%s":      fmt.Sprintf("%s", *sc),
		"json":    string(js),
		"zerolog": logs.String(),
	}
	for name, out := range outputs {
		assertNoSecret(t, out, c.ClientSecret, keyLines)
		if strings.Contains(out, d) {
			t.Errorf("%s output contains the private exponent", name)
		}
		if !strings.Contains(out, c.ClientID) {
			t.Errorf("%s output = %q; want it to name client id %q", name, out, c.ClientID)
		}
	}
}

// assertNoSecret fails if s contains the secret or any line of PEM key body.
func assertNoSecret(t testing.TB, s, secret string, keyLines []string) {
	t.Helper()
	if secret != "" && strings.Contains(s, secret) {
		t.Errorf("output contains the client secret: %q", s)
	}
	for _, l := range keyLines {
		if strings.HasPrefix(l, "-----") || len(l) < 16 {
			continue
		}
		if strings.Contains(s, l) || strings.Contains(s, l[:16]) {
			t.Errorf("output contains private key material %q", l[:16])
			return
		}
	}
}

func TestServiceCredentialsValidate(t *testing.T) {
	_, sc := newCreds(t, sim.CredentialOptions{})
	tests := []struct {
		name string
		edit func(c *ServiceCredentials)
		want string
	}{
		{"ok", func(*ServiceCredentials) {}, ""},
		{"no client id", func(c *ServiceCredentials) { c.ClientID = " " }, "ClientID: empty"},
		{"no secret", func(c *ServiceCredentials) { c.ClientSecret = "" }, "ClientSecret: empty"},
		{"no org", func(c *ServiceCredentials) { c.Org = "" }, "Org: empty"},
		{"no id", func(c *ServiceCredentials) { c.TechnicalAccountID = "" }, "TechnicalAccountID: empty"},
		{"bad endpoint", func(c *ServiceCredentials) { c.IMSEndpoint = "a/b" }, "IMSEndpoint: "},
		{"no scopes", func(c *ServiceCredentials) { c.Metascopes = []string{" "} }, "Metascopes: empty"},
		{"no key", func(c *ServiceCredentials) { c.PrivateKey = nil }, "PrivateKey: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *sc
			tt.edit(&c)
			err := c.validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("validate() = %v; want prefix %q", err, tt.want)
			}
		})
	}
	var nilCreds *ServiceCredentials
	if err := nilCreds.validate(); err == nil {
		t.Error("nil validate() = nil; want an error")
	}
	if !nilCreds.CertificateNotAfter().IsZero() {
		t.Error("nil CertificateNotAfter() is not zero")
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q; want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
