package replica

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Replicator keeps a set of dbds converged: one pump per ordered pair of
// sites (full mesh) and one marker. Create it with New and call Run once.
type Replicator struct {
	cfg   Config
	pumps []*pump
	mk    *marker
}

// New checks cfg and builds a Replicator whose metrics are registered
// with reg.
func New(cfg Config, reg prometheus.Registerer) (*Replicator, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replicator{cfg: cfg}
	m := newMetrics(reg)
	log := cfg.Logger
	r.mk = newMarker(&r.cfg, log.With("part", "marker"), m, r.markClient)
	for _, src := range cfg.Sites {
		for _, dst := range cfg.Sites {
			if src.Name == dst.Name {
				continue
			}
			r.pumps = append(r.pumps, &pump{
				cfg: &r.cfg, m: m, src: src, dst: dst, cursor: CursorName(src.Name, dst.Name),
				log: log.With("from", src.Name, "to", dst.Name), tr: newTracker(), mk: r.mk,
			})
		}
	}
	reg.MustRegister(newLagCollector(r.pumps))
	return r, nil
}

func (r *Replicator) markClient(s Site) (*client.Client, error) {
	return client.New(client.Config{
		Addr: s.Addr, Static: r.cfg.Key, Server: s.Server,
		Timeout: r.cfg.RequestTimeout, DialTimeout: r.cfg.HeartbeatTimeout,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second,
		Logger: quiet(r.cfg.Logger.With("part", "marker", "site", s.Name)),
	})
}

// Run replicates until ctx ends, then stops every pump and returns nil.
// Errors of dbds and links are retried forever (and logged and counted),
// never returned.
func (r *Replicator) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.mk.run(ctx)
	}()
	for _, p := range r.pumps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx)
		}()
	}
	r.cfg.Logger.Info("backupd replicating", "sites", len(r.cfg.Sites), "pumps", len(r.pumps))
	wg.Wait()
	return nil
}
