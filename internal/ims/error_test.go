package ims

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		status    int
		code      string
		temporary bool
	}{
		{400, "invalid_client", false},
		{401, "invalid_client", false},
		{400, "invalid_signature", false},
		{400, "invalid_scope", false},
		{400, "invalid_token", false},
		{400, "bad_request", false},
		{400, "unauthorized_client", false},
		{403, "", false},
		{404, "", false},
		{302, "", false},
		{408, "", true},
		{429, "", true},
		{500, "internal_error", true},
		{502, "", true},
		{503, "", true},
		{504, "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s", tt.status, tt.code), func(t *testing.T) {
			e := &Error{StatusCode: tt.status, Code: tt.code}
			if got := e.Temporary(); got != tt.temporary {
				t.Errorf("Temporary() = %v; want %v", got, tt.temporary)
			}
			wrapped := fmt.Errorf("context: %w", e)
			if got := IsPermanent(wrapped); got != !tt.temporary {
				t.Errorf("IsPermanent(wrapped) = %v; want %v", got, !tt.temporary)
			}
		})
	}
	for _, err := range []error{nil, errors.New("dial tcp: refused"), context.DeadlineExceeded, ErrMalformedResponse} {
		if IsPermanent(err) {
			t.Errorf("IsPermanent(%v) = true; want false", err)
		}
	}
}

func TestErrorMessageIsBoundedAndPrintable(t *testing.T) {
	e := &Error{StatusCode: 400, Code: "bad\ncode", Description: strings.Repeat("é\x00\u202e", 1000)}
	msg := e.Error()
	if strings.ContainsAny(msg, "\x00\n\u202e") {
		t.Errorf("Error() = %q; want no control or format characters", msg)
	}
	if n := utf8.RuneCountInString(msg); n > 400 {
		t.Errorf("Error() has %d runes; want at most 400", n)
	}
	if !strings.HasPrefix(msg, "ims: 400 bad code: é é é") {
		t.Errorf("Error() = %q; want prefix %q", msg[:40], "ims: 400 bad code: é é é")
	}
}

func TestErrorHints(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{StatusCode: 401, Code: "invalid_client"}, "check technicalAccount.clientId and clientSecret"},
		{Error{StatusCode: 400, Code: "invalid_client"}, "IMS does not know this client"},
		{Error{StatusCode: 400, Code: "invalid_signature"}, "private key does not belong to the certificate"},
		{Error{StatusCode: 400, Code: "invalid_scope"}, "metascopes"},
		{Error{StatusCode: 400, Code: "invalid_token"}, "clock"},
		{Error{StatusCode: 400, Code: "unauthorized_client"}, "grant type"},
		{Error{StatusCode: 429}, "throttling"},
		{Error{StatusCode: 418}, "ims: 418 I'm a teapot"},
		{Error{StatusCode: 599}, "ims: 599"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); !strings.Contains(got, tt.want) {
			t.Errorf("%+v.Error() = %q; want it to contain %q", tt.e, got, tt.want)
		}
	}
}
