package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/wire"
)

// Site is one dbd that backupd replicates.
type Site struct {
	// Name labels the site in metrics and logs and names the cursors
	// (lower-cased): letters, digits and '_', 1 to 27 characters, so that
	// "repl.NAME-to-NAME" is a valid dbd cursor name. Required.
	Name string
	// Addr is dbd's HOST:PORT. Required.
	Addr string
	// Server is dbd's pinned public key. Required.
	Server wire.PublicKey
}

// ParseSite parses the --site flag value "NAME=HOST:PORT,PUBFILE" and
// loads the public key file.
func ParseSite(v string) (Site, error) {
	name, addr, pub, err := parseSiteSpec(v)
	if err != nil {
		return Site{}, err
	}
	key, err := wire.LoadPublicKey(pub)
	if err != nil {
		return Site{}, fmt.Errorf("site %s: %w", name, err)
	}
	return Site{Name: name, Addr: addr, Server: key}, nil
}

// parseSiteSpec splits a --site value into its three fields and checks
// the name and the address, without touching the key file. The address is
// checked here, at start: a malformed one ("host" without a port, a port
// out of range) used to pass, and every session then failed to dial it,
// retried forever.
func parseSiteSpec(v string) (name, addr, pub string, err error) {
	name, rest, ok := strings.Cut(v, "=")
	addr, pub, ok2 := strings.Cut(rest, ",")
	if !ok || !ok2 || name == "" || addr == "" || pub == "" {
		return "", "", "", fmt.Errorf("site %q: want NAME=HOST:PORT,PUBFILE", v)
	}
	if err := checkSiteName(name); err != nil {
		return "", "", "", fmt.Errorf("site %q: %w", v, err)
	}
	if err := checkAddr(addr); err != nil {
		return "", "", "", fmt.Errorf("site %s: %w", name, err)
	}
	return name, addr, pub, nil
}

// checkAddr checks that addr is HOST:PORT with a port in 1..65535 (an
// IPv6 host in brackets), as the dialer wants it.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want HOST:PORT: %w", addr, err)
	}
	if strings.ContainsAny(host, " \t\r\n") {
		return fmt.Errorf("address %q: the host has white space", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("address %q: port %q not in 1..65535", addr, port)
	}
	return nil
}

// maxSiteName keeps "repl." + a + "-to-" + b within dbd's 64-byte names.
const maxSiteName = 27

// Config configures a Replicator. A zero field means its default, applied
// by applyDefaults.
type Config struct {
	// Sites are the dbds to keep converged; at least two. Every ordered
	// pair gets a pump (full mesh). Required.
	Sites []Site
	// Key is backupd's own key pair; every dbd lists its public half with
	// role backupd. Required.
	Key wire.KeyPair
	// Logger receives lifecycle and error logs. Default: discard.
	Logger *slog.Logger

	// MaxBatchRows bounds the rows of one merge. Default and maximum
	// wire.MaxMergeRows.
	MaxBatchRows int
	// MaxBatchBytes bounds the content bytes of one merge; a single larger
	// row is merged alone. Default 4 MiB.
	MaxBatchBytes int
	// MaxQueuedBytes bounds the content bytes a pump has read from its
	// source but not yet merged. Default 32 MiB.
	MaxQueuedBytes int
	// Heartbeat is how often a pump checks that both of its dbds answer
	// (and reads the source's latest stamp for the lag figures). Default 1 s.
	Heartbeat time.Duration
	// HeartbeatTimeout is how long a heartbeat may wait before the pump
	// drops its connections and reconnects: a stalled link shows no error
	// by itself. Default 5 s.
	HeartbeatTimeout time.Duration
	// RequestTimeout bounds one merge, cursor read or mark batch. Default 30 s.
	// A merge gets more time by its content bytes (MinMergeRate).
	RequestTimeout time.Duration
	// MinMergeRate is the slowest link, in bytes a second, over which a
	// merge must still get through: a merge of n content bytes may take
	// RequestTimeout plus n / MinMergeRate. Default 64 KiB/s (512 kbit/s:
	// a 50 MiB body may take 14 minutes). Below it, a large row never
	// crosses and its mail is never marked backed up.
	MinMergeRate int
	// MinBackoff and MaxBackoff bound the wait before a pump reconnects
	// after an error. Defaults 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// MinCopies is how many sites must hold a mail's header, body, mail and
	// receive rows before they are marked backed up. Default 2 (SPEC §1:
	// two physically different sites); at most len(Sites).
	MinCopies int
	// MaxPending bounds the receive rows waiting for their backed-up mark
	// that the marker tracks. Default 100000.
	MaxPending int
}

func (c *Config) applyDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBatchRows == 0 {
		c.MaxBatchRows = wire.MaxMergeRows
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = 32 << 20
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 5 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.MinMergeRate <= 0 {
		c.MinMergeRate = 64 << 10
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.MinCopies == 0 {
		c.MinCopies = 2
	}
	if c.MaxPending == 0 {
		c.MaxPending = 100000
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Sites) < 2 {
		errs = append(errs, fmt.Errorf("replica: %d sites configured, need at least 2", len(c.Sites)))
	}
	// One dbd listed twice under two names (the same address, or the same
	// key, which identifies a dbd) would count as two sites: a pump from
	// it to itself "merges" every row, and a mail stored on that one dbd
	// alone would be marked backed up (SPEC §1 broken), so it is refused.
	seen := map[string]bool{}
	addrs := map[string]string{}        // lower-cased address -> site name
	keys := map[wire.PublicKey]string{} // dbd's key -> site name
	for _, s := range c.Sites {
		if err := checkSiteName(s.Name); err != nil {
			errs = append(errs, err)
		}
		if lc := strings.ToLower(s.Name); seen[lc] {
			errs = append(errs, fmt.Errorf("replica: site %q listed twice (names are compared without case)", s.Name))
		} else {
			seen[lc] = true
		}
		if s.Addr == "" {
			errs = append(errs, fmt.Errorf("replica: site %q: address is required", s.Name))
		} else if err := checkAddr(s.Addr); err != nil {
			errs = append(errs, fmt.Errorf("replica: site %q: %w", s.Name, err))
		} else if other, ok := addrs[strings.ToLower(s.Addr)]; ok {
			errs = append(errs, fmt.Errorf("replica: sites %q and %q have the same address %s", other, s.Name, s.Addr))
		} else {
			addrs[strings.ToLower(s.Addr)] = s.Name
		}
		if s.Server.IsZero() {
			errs = append(errs, fmt.Errorf("replica: site %q: public key is required", s.Name))
		} else if other, ok := keys[s.Server]; ok {
			errs = append(errs, fmt.Errorf("replica: sites %q and %q have the same public key: one dbd listed twice?", other, s.Name))
		} else {
			keys[s.Server] = s.Name
		}
	}
	if c.Key.Public.IsZero() {
		errs = append(errs, errors.New("replica: key is required"))
	}
	if c.MaxBatchRows < 0 || c.MaxBatchRows > wire.MaxMergeRows {
		errs = append(errs, fmt.Errorf("replica: MaxBatchRows %d not in 1..%d", c.MaxBatchRows, wire.MaxMergeRows))
	}
	if c.MinCopies < 0 || (len(c.Sites) >= 2 && c.MinCopies > len(c.Sites)) {
		errs = append(errs, fmt.Errorf("replica: MinCopies %d not in 1..%d", c.MinCopies, len(c.Sites)))
	}
	return errors.Join(errs...)
}

func checkSiteName(n string) error {
	if n == "" || len(n) > maxSiteName {
		return fmt.Errorf("replica: site name %q: want 1 to %d characters", n, maxSiteName)
	}
	for _, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'
		if !ok {
			return fmt.Errorf("replica: site name %q: only letters, digits and _ are allowed", n)
		}
	}
	return nil
}

// CursorName is the name of the cursor that the pump from src to dst keeps
// in dst: the highest stamp of src below which every change is merged into
// dst and every receive row has been settled by the marker.
func CursorName(src, dst string) string {
	return "repl." + strings.ToLower(src) + "-to-" + strings.ToLower(dst)
}
