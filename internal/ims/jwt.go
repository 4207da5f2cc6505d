package ims

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxJWTLifetime is the longest JWT lifetime SignJWT accepts. Adobe's own
// clients use 5 minutes to 8 hours (spec §3).
const MaxJWTLifetime = 24 * time.Hour

// SignJWT returns the RS256 JWT that IMS exchanges for an access token,
// valid from now for ttl (0 < ttl <= MaxJWTLifetime). Its claims are exactly
// those of Adobe's aemcs-api-client-lib: iss (org), sub (technical account
// id), aud (https://{IMSEndpoint}/c/{ClientID}), exp, and one
// "https://{IMSEndpoint}/s/{scope}": true per metascope. There is no iat.
func (c *ServiceCredentials) SignJWT(now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > MaxJWTLifetime {
		return "", fmt.Errorf("sign IMS JWT: lifetime %v is outside (0, %v]", ttl, MaxJWTLifetime)
	}
	claims, err := c.jwtClaims(now.Add(ttl))
	if err != nil {
		return "", fmt.Errorf("sign IMS JWT: %w", err)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(c.PrivateKey)
	if err != nil {
		return "", fmt.Errorf("sign IMS JWT: %w", err)
	}
	return s, nil
}

// jwtClaims builds the claim set. The audience and scope prefix come from the
// credentials' own IMS endpoint, never from where the exchange is sent
// (spec §3).
func (c *ServiceCredentials) jwtClaims(exp time.Time) (jwt.MapClaims, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	// validate has checked that both succeed.
	host, _ := normalizeIMSEndpoint(c.IMSEndpoint)
	scopes, _ := cleanMetascopes(c.Metascopes)
	claims := jwt.MapClaims{
		"iss": c.Org,
		"sub": c.TechnicalAccountID,
		"aud": "https://" + host + "/c/" + c.ClientID,
		"exp": exp.Unix(),
	}
	for _, s := range scopes {
		claims["https://"+host+"/s/"+s] = true
	}
	return claims, nil
}
