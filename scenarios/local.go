package scenarios

import "github.com/stampede-live/stampede/testenv/local"

// LocalFaults converts the scenario's faults for local.RunFaults. Process faults keep
// their role names (origin, mirror-N, counter). A delay fault's target is the mirror
// whose upstream link slows: the runner passes local.RunFaults a link called mirror-N
// for the proxy between mirror-N and the origin.
func (s *Scenario) LocalFaults() []local.Fault {
	out := make([]local.Fault, len(s.Faults))
	for i, f := range s.Faults {
		out[i] = local.Fault{
			At:     f.At.D(),
			Action: local.FaultAction(f.Action),
			Target: f.Target,
			Until:  f.Until.D(),
			Delay:  f.Delay.D(),
		}
	}
	return out
}

// LocalRestart is the supervisor's restart policy for p.
func (p Process) LocalRestart() local.RestartPolicy {
	if p.Restart == RestartOnCrash {
		return local.RestartOnCrash
	}
	return local.RestartNever
}
