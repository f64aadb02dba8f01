package lifecycle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRunUndoesChangedStepsNewestFirst(t *testing.T) {
	var log []string
	mk := func(name string, changed bool, err error) step {
		return step{
			name: name,
			do:   func() (bool, error) { log = append(log, "do "+name); return changed, err },
			undo: func() error { log = append(log, "undo "+name); return nil },
		}
	}
	boom := errors.New("boom")
	_, err := run([]step{mk("a", true, nil), mk("b", false, nil), mk("c", true, nil), mk("d", false, boom), mk("e", true, nil)})
	if !errors.Is(err, boom) || err.Error() != "d: boom" {
		t.Fatalf("err = %v", err)
	}
	want := []string{"do a", "do b", "do c", "do d", "undo c", "undo a"}
	if !reflect.DeepEqual(log, want) {
		t.Errorf("log = %v, want %v", log, want)
	}
}

func TestRunReportsUndoFailures(t *testing.T) {
	stuck := errors.New("stuck")
	_, err := run([]step{
		{name: "a", do: func() (bool, error) { return true, nil }, undo: func() error { return stuck }},
		{name: "b", do: func() (bool, error) { return false, errors.New("no") }},
	})
	if !errors.Is(err, stuck) || !strings.Contains(err.Error(), "undo a: stuck") {
		t.Errorf("err = %v", err)
	}
}

func TestRunReturnsChanges(t *testing.T) {
	changes, err := run([]step{
		{name: "a", do: func() (bool, error) { return true, nil }},
		{name: "b", do: func() (bool, error) { return false, nil }},
	})
	if err != nil || !reflect.DeepEqual(changes, []string{"a"}) {
		t.Errorf("changes = %v, err = %v", changes, err)
	}
}
