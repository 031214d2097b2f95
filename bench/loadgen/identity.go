package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// identity is a peer's self-signed certificate, made the way the relay's peers make theirs
// (src/shared/self-signed-certificate.ts): an Ed25519 key, the email as subject CN and as the
// one SAN email, valid from an hour ago for ten years.
type identity struct {
	email          string
	certificate    tls.Certificate
	certificatePEM string
}

func newIdentity(email string) (identity, error) {
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return identity{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return identity{}, err
	}
	notBefore := time.Now().Add(-time.Hour)
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: email},
		EmailAddresses:        []string{email},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(10, 0, 0),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, public, private)
	if err != nil {
		return identity{}, fmt.Errorf("failed to make a certificate for %s: %w", email, err)
	}
	return identity{
		email:          email,
		certificate:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: private},
		certificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}, nil
}
