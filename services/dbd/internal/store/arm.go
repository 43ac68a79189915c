package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// Armed requests. smtpd's last durable write for an accepted mail, the
// acknowledgement, used to wait for the filter's verdict to be durable,
// travel to smtpd, and come back: a second group commit, and so a second
// fsync, between the verdict and the 250. An armed request is parked in
// the writer instead and staged into the very group that makes its
// conditions true, so the verdict and the acknowledgement become durable
// in one fsync. Nothing about the invariant changes: the acknowledgement
// is applied only with every condition met, in one atomic batch, and its
// requester is answered only once that batch is durable.

// Cond is one condition of an armed request: row Key of Table exists and
// its column Name has a value v != 0 with v&Mask == Want.
type Cond struct {
	Table model.Table
	Key   model.Key
	Name  string
	Mask  uint64
	Want  uint64
}

func (c *Cond) met(st *staged) bool {
	if !st.exists {
		return false
	}
	v := st.meta.State.Cols[c.Name]
	return v != 0 && v&c.Mask == c.Want
}

// armCounters count the ends of armed requests (Store.ArmStats): met
// when they reached the writer (atOnce: they took a group commit of their
// own, as a plain batch does), fired from their park by a later change
// (fired: in that change's commit, the point of arming), or withdrawn
// unfired at their deadline or by their caller. A store that stops
// answers the rest with its error, uncounted.
type armCounters struct {
	atOnce, fired, withdrawn atomic.Uint64
}

// ErrNotFired is Arm's answer when its deadline passed (or its caller
// went away) before its conditions were met: nothing was applied.
var ErrNotFired = errors.New("store: armed request expired before its conditions were met")

// MaxArmConds bounds the conditions of one armed request.
const MaxArmConds = 256

// Arm applies muts as one atomic, durable transaction in the group commit
// whose changes make every condition true, or in the next one if they are
// true already, and returns one result per mutation once that group is
// durable. If the conditions are not all met by deadline, or ctx ends
// first, nothing is applied and Arm returns ErrNotFired (or ctx.Err()
// after the request is withdrawn): the answer is always definite.
func (s *Store) Arm(ctx context.Context, conds []Cond, muts []Mutation, deadline time.Time) ([]Result, error) {
	if len(conds) == 0 || len(conds) > MaxArmConds {
		return nil, fmt.Errorf("%w: %d conditions (1-%d)", ErrInvalid, len(conds), MaxArmConds)
	}
	for i := range conds {
		if err := model.CheckTable(conds[i].Table); err != nil {
			return nil, fmt.Errorf("%w: condition %d: %w", ErrInvalid, i, err)
		}
		if err := model.CheckName(conds[i].Name); err != nil {
			return nil, fmt.Errorf("%w: condition %d: %w", ErrInvalid, i, err)
		}
	}
	n := 0
	for i := range muts {
		if err := checkMutation(&muts[i]); err != nil {
			return nil, fmt.Errorf("%w: mutation %d: %w", ErrInvalid, i, err)
		}
		n += len(muts[i].Content)
	}
	r := &writeReq{muts: muts, conds: conds, bytes: n, done: make(chan struct{})}
	if err := s.enqueue(ctx, r); err != nil {
		return nil, err
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-r.done:
		return r.res, r.err
	case <-timer.C:
	case <-ctx.Done():
	case <-s.failed:
	case <-s.done:
		// Stopped: a request enqueued after the writer's last drain is
		// never answered, so waiting for the deadline would be in vain.
		return s.stoppedAnswer(r)
	}
	// Withdraw it through the writer, which owns the parked requests: it
	// either is still parked (answered ErrNotFired at once) or has been
	// staged into a group (answered with that group).
	_, err := s.submit(context.WithoutCancel(ctx), &writeReq{disarm: r, done: make(chan struct{})})
	if err != nil {
		// The writer has stopped; it answered every parked request as
		// it did.
		select {
		case <-r.done:
			return r.res, r.err
		default:
			return nil, err
		}
	}
	<-r.done
	if errors.Is(r.err, ErrNotFired) && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return r.res, r.err
}

// stageArmed handles an armed request (r.conds set) or a withdrawal
// (r.disarm set) in the writer. It reports whether r was parked, and is
// then not part of the group.
func (g *group) stageArmed(r *writeReq) (parked bool) {
	s := g.s
	if a := r.disarm; a != nil {
		if s.unpark(a) {
			s.armCount.withdrawn.Add(1)
			a.err = ErrNotFired
			close(a.done)
		}
		return false
	}
	ok, err := g.met(r.conds)
	if err != nil {
		r.err = err
		return false
	}
	if ok {
		s.armCount.atOnce.Add(1)
		g.stageRequest(r)
		return false
	}
	if s.armed == nil {
		s.armed = make(map[rowRef][]*writeReq)
	}
	for i := range r.conds {
		ref := rowRef{r.conds[i].Table, r.conds[i].Key}
		s.armed[ref] = append(s.armed[ref], r)
	}
	return true
}

// met reports whether every condition holds in the group's view (what is
// durable plus what the group has staged so far).
func (g *group) met(conds []Cond) (bool, error) {
	for i := range conds {
		st, err := g.lookup(rowRef{conds[i].Table, conds[i].Key})
		if err != nil {
			return false, err
		}
		if !conds[i].met(&st) {
			return false, nil
		}
	}
	return true, nil
}

// fireArmed stages every parked request whose conditions the rows just
// changed (refs) have made true; they join the group (g.fired).
func (g *group) fireArmed(refs []rowRef) {
	s := g.s
	if len(s.armed) == 0 {
		return
	}
	for _, ref := range refs {
		for _, a := range s.armed[ref] {
			ok, err := g.met(a.conds)
			if err != nil {
				// A read failed: leave it parked; the deadline ends it.
				continue
			}
			if !ok {
				continue
			}
			s.unpark(a)
			s.armCount.fired.Add(1)
			g.fired = append(g.fired, a)
			g.stageRequest(a)
			// stageRequest may have fired others and changed s.armed[ref]:
			// look again from the start.
			g.fireArmed([]rowRef{ref})
			break
		}
	}
}

// unpark removes a from the parked requests; false if it was not parked.
func (s *Store) unpark(a *writeReq) bool {
	found := false
	for i := range a.conds {
		ref := rowRef{a.conds[i].Table, a.conds[i].Key}
		list := s.armed[ref]
		for j, x := range list {
			if x == a {
				list = append(list[:j], list[j+1:]...)
				found = true
				break
			}
		}
		if len(list) == 0 {
			delete(s.armed, ref)
		} else {
			s.armed[ref] = list
		}
	}
	return found
}

// failArmed answers every parked request with err: the writer stops.
func (s *Store) failArmed(err error) {
	seen := make(map[*writeReq]bool)
	for _, list := range s.armed {
		for _, a := range list {
			if !seen[a] {
				seen[a] = true
				a.err = err
				close(a.done)
			}
		}
	}
	s.armed = nil
}
