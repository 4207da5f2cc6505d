package ims

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestParseBasicCredentials(t *testing.T) {
	got, err := ParseBasicCredentials([]byte(`{"username":" admin ","password":" pa ss "}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "admin" || got.Password.Reveal() != " pa ss " {
		t.Errorf("got %q / password ok %v; want admin and the password verbatim", got.Username, got.Password.Reveal() == " pa ss ")
	}
}

func TestParseBasicCredentialsProblems(t *testing.T) {
	const pw = "hunter2-secret-pw"
	tests := []struct {
		name, data string
		want       []string
	}{
		{"both missing", `{}`, []string{"username: missing", "password: missing"}},
		{"empty password", `{"username":"a","password":""}`, []string{"password: empty"}},
		{"password not a string", `{"username":"a","password":1}`, []string{"password: not a string"}},
		{"colon in user", `{"username":"a:b","password":"` + pw + `"}`, []string{"username: contains a colon"}},
		{"newline in password", `{"username":"a","password":"` + pw + `\n"}`, []string{"password: contains a control character"}},
		{"not JSON", `{"password":"` + pw, []string{"not valid JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBasicCredentials([]byte(tt.data))
			if err == nil {
				t.Fatalf("ParseBasicCredentials() = %v; want an error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q; want %q", err, w)
				}
			}
			secretsOf{pw}.check(t, "error", err.Error())
		})
	}
}

func TestBasicCredentialsNeverPrintPassword(t *testing.T) {
	c := BasicCredentials{Username: "admin", Password: "hunter2-secret-pw"}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := zerolog.New(&logs)
	logger.Info().Object("basic", c).Msg("x")
	for name, out := range map[string]string{"String": c.String(), "%#v": fmt.Sprintf("%#v", c), "%+v": fmt.Sprintf("%+v", &c), "json": string(js), "zerolog": logs.String()} {
		secretsOf{"hunter2-secret-pw", basicValue("admin", "hunter2-secret-pw")}.check(t, name, out)
		if !strings.Contains(out, "admin") {
			t.Errorf("%s = %q; want the user name", name, out)
		}
	}
}

func TestBasicSourceToken(t *testing.T) {
	src := newBasicSource(&BasicCredentials{Username: "admin", Password: "admin"})
	tok, err := src.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Scheme != "Basic" || tok.AccessToken != "YWRtaW46YWRtaW4=" || !tok.ExpiresAt.Equal(farFuture) {
		t.Errorf("Token() = scheme %q value %q expiry %v; want Basic YWRtaW46YWRtaW4= never expiring", tok.Scheme, tok.AccessToken, tok.ExpiresAt)
	}
	if strings.Contains(tok.String(), tok.AccessToken) {
		t.Error("Token.String() reveals the Basic value")
	}
}
