package ims

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

// A fixed key and certificate keep the fuzz seed corpus identical in every
// fuzzing process (generated keys differ per process, which the fuzzing
// engine cannot work with). "TESTING KEY" keeps secret scanners quiet; the key
// protects nothing.
const (
	seedKeyPEM = `-----BEGIN RSA TESTING KEY-----
MIIEowIBAAKCAQEAywt9GEdF8fCxj4ljK9mZdcZqaoaqbOkgB5BYWnUn2wgJtupr
ch51VwAAbkJGOK7ECcEK+BLu9bvNHXVOmYyWUrDIJOuRn23o6b8bQ+bOim2dCPgj
C/vn/+r9aT6wgJd78yG5uPrYVTU/tU8GRMIz3tvlEXPqiH/EqlCyFStG2XRFjyIO
AL7YsnRx1keAx2bnaxjrVRK5eVmS5yQWW/j3MbVhBFQ8BhpCOWzTHohcc6h68+K3
IJbpc4kOAPjkg3JyUDSif17FFLAkdl8WYiyybU9Bg4Zc0y6vccMFRvRCZEZzq+XY
x/N1nOZ2AgrpPsmE3+fTDZQfjL+Q5aHRsqukUwIDAQABAoIBACVNTwYO0gLIvVYp
X1bG+zJv6Uz4wIaRrZi2JAU6UMAkkeRQ3LxybAw3q9yVwGDZeppwJJu+nrf2cJBg
5LfA5Dz8zUg7Ht2zS37l5RRsarVzvc3QCGBDPzP87+FN6w80xUi9gWlCbEv7JGEi
y3wGUZE3xLWYHhZFotPHT3AkKzf3mC3ETv8VFJCOyeHc9Qzd6F43X97En2unZGBy
0Ea4Cd5miBjqWCMKaWZ8RHWkDpx3ofToR/OTvi1hrK3vp9QNML/nGRnluyT+Jye5
YvkMmzU6uovjpQVpgL6j2W6c1VSNsItf5ZRQ5AeWFCi1TnFH64XNNvwTbjxwZv2V
OxcRNYECgYEAzK/uD77IjJPK1Mj2rEyetZddC/Lfx+oaGpIflilmWWzIjiNUHIB2
3FkAkXqgMJ4lOWO/+1F4bacHioLJuGqMANiF4bUJ+zXSYA//N1FBZ0ddjH8CXiT+
HUA0QAPiVzvjLUpFC7CXggTwq4j3B8z/RnKPoyG5lVs44SCC6rS4IqsCgYEA/fIo
qlOQ1yQ0XOkb8706Y+s2jh2NpS3OWmXf6feKm+5rwAJ1TKdvFTr3KkvIyFCIOPYl
3Lnyuw1RKVkuMv4Werb2g4iHB+YnKXv3M+TfS8oiXEFHlxE4GDqlOOCegdYqWm40
xH8nCw6lFYNAoomjh3LFoS4kJNEbyoS7uEsVxPkCgYEAkwni4y6zVMEqmPcQtK+J
53snnVjIxwz12ZaU2EM/QggyfmEEoEDsodfR37AOeT5yESsGE9zvvR2a/jZ8AF2R
212vt3ddBzgfu2Bif3OAn1eV7UKkCctbPNoNbtsbcn0T8koDFaWzAPTZivAmPVVX
IF1Vr+OfNJrGXnsDcOWHzWcCgYBVvh3c5LpS6faEKHE3qvy8H/8bnP7mdsDl5N/l
r58tZyMagbn5V885697oeQ4iFI7qLLI8BMzgO27b9zCSJxiP9pblcoOlNyCh8SlW
bEC45lcTrzbs2vOFusdunOjoDdffELbgYc5c/WTgDqEUQETmxunTsjCh/bjUeFyp
rTB8gQKBgCL3i9Kb/kPiRZCrlxaz/6mbG4Jc9wAX7M8n0nStpIvHLkLqwDJzkpPm
4uvWAAz3+oVwq17KIRG3vBcc/h9YYkg1AdNfsY4kVez4LjA2+/+IUTWw6DxqLbUS
aHBdHeVVpHWS62t1u0WAHOWJBq7t+xGUyi8wDnOPecV1U668djvi
-----END RSA TESTING KEY-----
`
	seedCertPEM = `-----BEGIN CERTIFICATE-----
MIICoTCCAYmgAwIBAgIBATANBgkqhkiG9w0BAQsFADAUMRIwEAYDVQQDEwlmdXp6
LXNlZWQwHhcNMjYwMTAxMDAwMDAwWhcNMjcwMTAxMDAwMDAwWjAUMRIwEAYDVQQD
EwlmdXp6LXNlZWQwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDLC30Y
R0Xx8LGPiWMr2Zl1xmpqhqps6SAHkFhadSfbCAm26mtyHnVXAABuQkY4rsQJwQr4
Eu71u80ddU6ZjJZSsMgk65GfbejpvxtD5s6KbZ0I+CML++f/6v1pPrCAl3vzIbm4
+thVNT+1TwZEwjPe2+URc+qIf8SqULIVK0bZdEWPIg4AvtiydHHWR4DHZudrGOtV
Erl5WZLnJBZb+PcxtWEEVDwGGkI5bNMeiFxzqHrz4rcglulziQ4A+OSDcnJQNKJ/
XsUUsCR2XxZiLLJtT0GDhlzTLq9xwwVG9EJkRnOr5djH83Wc5nYCCuk+yYTf59MN
lB+Mv5DlodGyq6RTAgMBAAEwDQYJKoZIhvcNAQELBQADggEBAIZjXCTUEf6cYLFm
keg78+U74ZETYl5xK+a4+SSWJ1e3EW/e9ikdFtxZGZuKOQgYv/kOltvWb9Y+igvb
kBt+czD/NTnXUUR3vTuEKIYncBWznf5GDrORS22sBT/bZfUkFKgZ63nH0XNEJ3PP
K0Yu5Az89Ai91HSRK3ImNWq40z+fVIVWWgzvBoOaSzppR7oKzwoh/LHoxeRde7In
oxh4tE1uYPvG0fox8g49x5DxybYjidDz4MtHsSKivez+A9vQQZYO1+xOIFUMsvRd
9umAGInladO7pkEfXtdxhBuxLlqCQMVPd/IzilN8YXmPQzjrjrRaM4mUBWW2KjCz
Xo3l/I4=
-----END CERTIFICATE-----
`
)

// seedCredentials renders a service credentials file around the fixed key,
// with the private key as PKCS#1 or PKCS#8 and line breaks replaced by nl.
func seedCredentials(tb testing.TB, pkcs8 bool, nl string, wrapper bool) []byte {
	tb.Helper()
	keyPEM := strings.ReplaceAll(seedKeyPEM, "TESTING KEY", "PRIVATE KEY")
	if pkcs8 {
		block, _ := pem.Decode([]byte(keyPEM))
		key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	integration := map[string]any{
		"imsEndpoint":      "ims-na1.adobelogin.com",
		"metascopes":       "ent_aem_cloud_api",
		"technicalAccount": map[string]any{"clientId": "cm-p1-e2-integration", "clientSecret": "p8e-fuzz-seed-secret"},
		"email":            "seed@techacct.adobe.com",
		"id":               "SEED@techacct.adobe.com",
		"org":              "SEED@AdobeOrg",
		"privateKey":       strings.ReplaceAll(keyPEM, "\n", nl),
		"publicKey":        strings.ReplaceAll(seedCertPEM, "\n", nl),
	}
	var v any = integration
	if wrapper {
		v = map[string]any{"ok": true, "statusCode": 200, "integration": integration}
	}
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestSeedCredentialsParse(t *testing.T) {
	for _, pkcs8 := range []bool{false, true} {
		for _, nl := range []string{"\r\n", "\n", `\n`} {
			for _, wrapper := range []bool{false, true} {
				c, err := ParseServiceCredentials(seedCredentials(t, pkcs8, nl, wrapper))
				if err != nil {
					t.Fatalf("pkcs8=%v nl=%q wrapper=%v: %v", pkcs8, nl, wrapper, err)
				}
				if c.Certificate == nil || c.ClientSecret.Reveal() != "p8e-fuzz-seed-secret" {
					t.Errorf("pkcs8=%v nl=%q wrapper=%v: parsed %v", pkcs8, nl, wrapper, c)
				}
			}
		}
	}
}
