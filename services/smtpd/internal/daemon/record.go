package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
	"github.com/twinmx/twinmx/services/smtpd/internal/replay"
	"github.com/twinmx/twinmx/services/smtpd/internal/session"
)

// recorder stores every connection's transcript as a capture row when the
// connection closes — sessions that never reached EHLO included, so early
// talkers and scanners leave a record too (SPEC §5: record every attempt).
type recorder struct {
	ctx context.Context
	db  interface {
		FindOrInsert(ctx context.Context, t model.Table, content []byte) (uint64, bool, error)
		Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
	}
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	m       *metrics.Metrics
}

// listener wraps guard's listener so each accepted connection is recorded.
type listener struct {
	*guard.Listener
	rec *recorder
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if gc, ok := c.(*guard.Conn); ok {
		start := time.Now()
		go func() {
			<-gc.Done()
			l.rec.store(gc, start)
		}()
	}
	return c, nil
}

func (r *recorder) store(c *guard.Conn, start time.Time) {
	id := session.ID(r.prefix, c.ID())
	client := c.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	if c.EarlyTalker() {
		r.m.Rejections.WithLabelValues("early-talker").Inc()
		ti := []byte(fmt.Sprintf("twinmx-throw-in/1\nsession: %s\ntime: %s\nclient: %s\nearly-talker: yes\n",
			id, start.UTC().Format(time.RFC3339Nano), client))
		ref := wire.Ref{Content: ti}
		if _, err := r.db.Batch(ctx, []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.ThrowIn, Content: ti},
			{Op: wire.OpSet, Table: model.ThrowIn, Ref: ref, Name: "reply", Value: 554},
		}); err != nil {
			r.m.DBErrors.WithLabelValues("throw-in").Inc()
			r.log.Warn("recording an early talker failed", "session", id, "err", err)
		}
	}
	tr := c.Capture()
	if len(tr) == 0 {
		return
	}
	content := append([]byte(replay.MetaLine(id, client, start)), tr...)
	if _, _, err := r.db.FindOrInsert(ctx, model.Capture, content); err != nil {
		r.m.DBErrors.WithLabelValues("capture").Inc()
		r.log.Warn("storing the capture failed", "session", id, "err", err)
	}
}
