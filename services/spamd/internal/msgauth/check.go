package msgauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// Config configures a Checker. A zero field means its default.
type Config struct {
	// MaxSignatures is how many DKIM signatures of one mail are verified;
	// later ones are ignored. Each costs a key lookup and a hash of the
	// body, so a mail with 50 signatures must not cost 50 of each.
	// Default 5.
	MaxSignatures int
	// MaxLookups bounds the DNS lookups of one Check, SPF, DKIM and DMARC
	// together. SPF alone may use 10 mechanism lookups plus the names
	// behind mx and ptr (RFC 7208 §4.6.4); past the budget a lookup fails
	// as a temporary error. Default 50.
	MaxLookups int
	// Logger receives one debug line per Check with the reasons behind
	// the results. Default: discard.
	Logger *slog.Logger
}

const (
	defaultMaxSignatures = 5
	defaultMaxLookups    = 50
)

func (c Config) withDefaults() Config {
	if c.MaxSignatures == 0 {
		c.MaxSignatures = defaultMaxSignatures
	}
	if c.MaxLookups == 0 {
		c.MaxLookups = defaultMaxLookups
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxSignatures < 0 {
		errs = append(errs, fmt.Errorf("msgauth: max signatures %d is negative", c.MaxSignatures))
	}
	if c.MaxLookups < 0 {
		errs = append(errs, fmt.Errorf("msgauth: max lookups %d is negative", c.MaxLookups))
	}
	return errors.Join(errs...)
}

// Checker runs the sender-authentication checks. It holds no per-mail
// state and is safe for concurrent use.
type Checker struct {
	r   Resolver
	cfg Config
}

// New returns a Checker that looks names up through r.
func New(r Resolver, cfg Config) *Checker {
	return &Checker{r: r, cfg: cfg.withDefaults()}
}

// Check runs SPF, DKIM and DMARC with the default Config.
func Check(ctx context.Context, r Resolver, env signal.Envelope, raw []byte) signal.Auth {
	return New(r, Config{}).Check(ctx, env, raw)
}

// Check judges one mail: SPF for the envelope, DKIM for every signature
// (up to MaxSignatures), then DMARC for the From domain on top of both.
// It never fails: what cannot be judged is None, a DNS problem is
// TempError. When ctx ends, the lookups still pending fail as temporary
// and Check returns promptly.
func (c *Checker) Check(ctx context.Context, env signal.Envelope, raw []byte) signal.Auth {
	lr := newLibResolver(c.r, c.cfg.MaxLookups)
	msg := canonicalLines(raw)

	var (
		a               signal.Auth
		spfErr, dkimErr error
		dmarcErr        error
		dkimTemp        []string
		fromRes         signal.AuthResult
		fromProblem     string
		wg              sync.WaitGroup
	)
	// SPF and DKIM are independent; running them side by side halves the
	// latency of a Check when DNS is slow.
	// The From domain first: DKIM looks past its signature bound for
	// signatures that align with it.
	a.FromDomain, fromRes, fromProblem = fromHeaderDomain(msg)
	wg.Go(func() { a.SPF, a.SPFDomain, spfErr = c.checkSPF(ctx, lr, env) })
	wg.Go(func() { a.DKIM, a.DKIMDomains, dkimTemp, dkimErr = c.checkDKIM(ctx, lr, msg, a.FromDomain) })
	wg.Wait()

	if a.FromDomain == "" {
		a.DMARC = fromRes
	} else {
		a.DMARC, a.DMARCReject, dmarcErr = c.checkDMARC(ctx, lr, dmarcInput{
			fromDomain: a.FromDomain,
			spf:        a.SPF,
			spfDomain:  a.SPFDomain,
			dkimPass:   a.DKIMDomains,
			dkimTemp:   dkimTemp,
		})
	}

	c.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "sender authentication",
		slog.String("spf", a.SPF.String()), slog.String("spf_domain", a.SPFDomain), errAttr("spf_error", spfErr),
		slog.String("dkim", a.DKIM.String()), slog.Any("dkim_domains", a.DKIMDomains), errAttr("dkim_error", dkimErr),
		slog.String("dmarc", a.DMARC.String()), slog.String("from_domain", a.FromDomain), slog.String("from_problem", fromProblem),
		errAttr("dmarc_error", dmarcErr), slog.Bool("dmarc_reject", a.DMARCReject),
		slog.Int64("dns_lookups", lr.used.Load()))
	return a
}

func errAttr(key string, err error) slog.Attr {
	if err == nil {
		return slog.String(key, "")
	}
	return slog.String(key, err.Error())
}

// checkSPF runs check_host() (RFC 7208 §4) for MAIL FROM, or for the HELO
// name when MAIL FROM is null (§2.4). It returns the result, the domain
// judged and the library's explanation.
func (c *Checker) checkSPF(ctx context.Context, lr *libResolver, env signal.Envelope) (signal.AuthResult, string, error) {
	ip := parseClientIP(env.ClientIP)
	sender := strings.Trim(strings.TrimSpace(env.From), "<>")
	helo := asciiDomain(env.Helo)
	var domain string
	if sender == "" {
		// RFC 7208 §2.4: the null sender is checked as postmaster@HELO.
		domain = helo
		sender = "postmaster@" + helo
	} else {
		at := strings.LastIndexByte(sender, '@')
		if at < 0 {
			// RFC 7208 §4.3: a local part alone is taken with the HELO
			// domain; that is not a claim about any domain we can check.
			return signal.None, "", errors.New("spf: mail from has no domain")
		}
		domain = asciiDomain(sender[at+1:])
		sender = sender[:at+1] + domain
	}
	if ip == nil {
		// spamd eval judges files with no envelope: nothing to check.
		return signal.None, domain, errors.New("spf: no client ip")
	}
	if !validDomain(domain) {
		// RFC 7208 §4.3: a malformed or single-label domain is "none".
		return signal.None, domain, fmt.Errorf("spf: domain %q is not a valid multi-label name", domain)
	}
	res, err := spf.CheckHostWithSender(ip, helo, sender, spf.WithContext(ctx), spf.WithResolver(lr))
	return spfResult(res), domain, err
}

// parseClientIP reads the client's address as a throw-in row or a trace
// field may give it: 192.0.2.1, 2001:db8::1, with a port (192.0.2.1:25,
// [2001:db8::1]:25) or as an address literal ([192.0.2.1],
// [IPv6:2001:db8::1]). The port goes first: trimming the brackets first
// left "2001:db8::1]:25" of an IPv6 address with a port, no address.
func parseClientIP(s string) net.IP {
	s = strings.TrimSpace(s)
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if len(s) > len("IPv6:") && strings.EqualFold(s[:len("IPv6:")], "IPv6:") {
		s = s[len("IPv6:"):]
	}
	return net.ParseIP(s)
}

func spfResult(r spf.Result) signal.AuthResult {
	switch r {
	case spf.Pass:
		return signal.Pass
	case spf.Fail:
		return signal.Fail
	case spf.SoftFail:
		return signal.SoftFail
	case spf.Neutral:
		return signal.Neutral
	case spf.TempError:
		return signal.TempError
	case spf.PermError:
		return signal.PermError
	default:
		return signal.None
	}
}

// validDomain reports whether d is a multi-label DNS name (RFC 7208 §4.3,
// RFC 1035 §2.3.4 lengths). Underscores are allowed: they occur in real
// TXT-bearing names.
func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			switch {
			case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '_':
			case b >= 0x80:
				// U-labels: the DNS will answer for them or not.
			default:
				return false
			}
		}
	}
	return true
}

// checkDKIM verifies the first MaxSignatures signatures (RFC 6376 §6),
// and when none of them verified for the From domain from, up to
// MaxSignatures more of those whose d= aligns with it (relaxed). It
// returns the best result (pass, then temperror, fail, permerror), the d=
// domains that verified, and the d= domains of signatures that hit a
// temporary error: DMARC must not call a mail failed when one of those
// might have aligned.
func (c *Checker) checkDKIM(ctx context.Context, lr *libResolver, msg []byte, from string) (signal.AuthResult, []string, []string, error) {
	opts := &dkim.VerifyOptions{LookupTXT: lr.txtFunc(ctx), MaxVerifications: c.cfg.MaxSignatures}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), opts)
	if errors.Is(err, dkim.ErrTooManySignatures) && from != "" && !slices.ContainsFunc(verifs, func(v *dkim.Verification) bool {
		return v != nil && v.Err == nil && AlignedRelaxed(v.Domain, from)
	}) {
		// Each relay prepends its signature, so the author's, the one
		// DMARC needs, is the lowest: a mail that passed six relays had
		// it unverified, DMARC failed, and under p=reject a wanted mail
		// was refused. Only aligned signatures are looked at, so junk
		// signatures cannot push it out of reach either.
		if later := laterAligned(msg, from, c.cfg.MaxSignatures); later != nil {
			more, _ := dkim.VerifyWithOptions(bytes.NewReader(later), opts)
			verifs = append(verifs, more...)
		}
	}
	if errors.Is(err, dkim.ErrTooManySignatures) {
		err = fmt.Errorf("dkim: verified only the first %d signatures (and aligned ones after them): %w", c.cfg.MaxSignatures, err)
	} else if err != nil {
		err = fmt.Errorf("dkim: verify: %w", err)
	}
	var (
		domains, temp     []string
		failed, permerror bool
	)
	for _, v := range verifs {
		switch {
		case v == nil:
		case v.Err == nil:
			domains = appendDomain(domains, v.Domain)
		case dkim.IsTempFail(v.Err):
			temp = appendDomain(temp, v.Domain)
		case dkim.IsPermFail(v.Err):
			permerror = true
		default:
			failed = true
		}
		if v != nil && v.Err != nil && err == nil {
			err = fmt.Errorf("dkim: d=%s: %w", v.Domain, v.Err)
		}
	}
	switch {
	case len(domains) > 0:
		return signal.Pass, domains, temp, err
	case len(temp) > 0:
		return signal.TempError, nil, temp, err
	case failed:
		return signal.Fail, nil, nil, err
	case permerror:
		return signal.PermError, nil, nil, err
	default:
		return signal.None, nil, nil, err
	}
}

// appendDomain adds d, normalized (asciiDomain), to list unless it is
// already there.
func appendDomain(list []string, d string) []string {
	d = asciiDomain(d)
	if d == "" || slices.Contains(list, d) {
		return list
	}
	return append(list, d)
}
