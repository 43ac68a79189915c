// Package tlsconf makes the TLS configuration of twinmx's public listeners
// (smtpd STARTTLS, pop3d STLS and POP3S, imapd STARTTLS and IMAPS): from
// PEM files, or a self-signed certificate for local runs and tests. TLS 1.2
// is the minimum.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// LoadTLS returns a server TLS configuration from PEM files.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// SelfSignedTLS returns a TLS configuration with a fresh self-signed
// certificate for hostname (local runs and tests: clients must be told not
// to verify it).
func SelfSignedTLS(hostname string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: hostname}, DNSNames: []string{hostname},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, nil
}

// FromFlags returns the TLS configuration a listener's flags ask for: the
// PEM files when either is given, else a self-signed certificate for
// hostname when selfSigned, else nil (no TLS).
func FromFlags(certFile, keyFile string, selfSigned bool, hostname string) (*tls.Config, error) {
	switch {
	case certFile != "" || keyFile != "":
		return LoadTLS(certFile, keyFile)
	case selfSigned:
		return SelfSignedTLS(hostname)
	}
	return nil, nil
}
