// Package tlsconf makes the TLS configuration of twinmx's public listeners
// (smtpd STARTTLS, pop3d STLS and POP3S, imapd STARTTLS and IMAPS): from
// PEM files, reloaded when they change (a renewed certificate is served
// without a restart), or a self-signed certificate for local runs and
// tests. TLS 1.2 is the minimum.
package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"time"
)

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
// PEM files when either is given (watched for renewals until ctx ends, see
// Watch), else a self-signed certificate for hostname when selfSigned,
// else nil (no TLS).
func FromFlags(ctx context.Context, log *slog.Logger, certFile, keyFile string, selfSigned bool, hostname string) (*tls.Config, error) {
	switch {
	case certFile != "" || keyFile != "":
		w, err := NewWatched(certFile, keyFile, log)
		if err != nil {
			return nil, err
		}
		go w.Watch(ctx, WatchInterval)
		return w.Config(), nil
	case selfSigned:
		return SelfSignedTLS(hostname)
	}
	return nil, nil
}
