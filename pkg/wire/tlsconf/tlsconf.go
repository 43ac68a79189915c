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
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"time"
)

// SelfSignedTLS returns a TLS configuration with a fresh self-signed
// certificate for hostname, valid for a year (local runs and tests:
// clients must be told not to verify it).
func SelfSignedTLS(hostname string) (*tls.Config, error) {
	certPEM, keyPEM, err := SelfSignedPEM(hostname, time.Now().AddDate(1, 0, 0))
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// SelfSignedPEM returns a fresh self-signed certificate for hostname (a
// name, or an IP address) valid until notAfter (whole seconds), and its
// key, as PEM files hold them (tests of the --tls-cert files).
func SelfSignedPEM(hostname string, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: hostname},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter.Truncate(time.Second),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(hostname); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{hostname}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// CheckFlags reports what is wrong with a listener's TLS flags, as its
// program checks them at start: half a certificate/key pair, or a pair
// together with --tls-self-signed (FromFlags would take the pair and
// ignore the flag); nil if nothing.
func CheckFlags(certFile, keyFile string, selfSigned bool) error {
	switch {
	case (certFile == "") != (keyFile == ""):
		return errors.New("--tls-cert and --tls-key go together: give both or neither")
	case certFile != "" && selfSigned:
		return errors.New("--tls-self-signed with --tls-cert: give one of them")
	}
	return nil
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
