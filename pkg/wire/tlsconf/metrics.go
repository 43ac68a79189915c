package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

// ExpiryGauge returns the gauge twinmx_tls_certificate_not_after_timestamp_seconds:
// the expiry of the certificate cfg serves now (after a renewal Watched
// took, the new one), for an alert well before it passes. NaN when there
// is none to read.
func ExpiryGauge(cfg *tls.Config) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "twinmx_tls_certificate_not_after_timestamp_seconds",
		Help: "Expiry (not-after, Unix seconds) of the TLS certificate served to new sessions.",
	}, func() float64 {
		leaf := servedLeaf(cfg)
		if leaf == nil {
			return math.NaN()
		}
		return float64(leaf.NotAfter.Unix())
	})
}

// servedLeaf returns the certificate cfg serves to a new session, or nil.
func servedLeaf(cfg *tls.Config) *x509.Certificate {
	var cert *tls.Certificate
	switch {
	case cfg.GetCertificate != nil:
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			return nil
		}
		cert = c
	case len(cfg.Certificates) > 0:
		cert = &cfg.Certificates[0]
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil
	}
	if cert.Leaf != nil {
		return cert.Leaf
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
