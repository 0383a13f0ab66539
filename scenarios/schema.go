package scenarios

import (
	"encoding/json"
	"reflect"
	"strings"
)

// SchemaFile is the JSON Schema of the scenario format, generated from the Go types
// (JSONSchema) and kept beside the scenarios for editors (yaml-language-server:
// `# yaml-language-server: $schema=scenario.schema.json`). A test keeps it current.
const SchemaFile = "scenario.schema.json"

// Patterns of the scalar types, loose enough for editors; Parse is the real check.
const (
	durationPattern  = `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	bitratePattern   = `^[0-9]+(\.[0-9]+)?[kKMG]?$`
	sizePattern      = `^[0-9]+(\.[0-9]+)?(B|KB|MB|GB|KiB|MiB|GiB)?$`
	ratePattern      = `^[0-9]+(\.[0-9]+)?(/(s|m|min|h|ms))?$`
	thresholdPattern = `^\s*[a-z][a-z0-9_]*\s*(<=|>=|==|!=|<|>)\s*\S+\s*$`
)

// JSONSchema returns the JSON Schema (draft 2020-12) of a scenario file.
func JSONSchema() ([]byte, error) {
	root := schemaOf(reflect.TypeFor[Scenario]())
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = "stampede scenario"
	root["description"] = "A stampede load-test scenario: topology, stream, viewers, tunings, faults and thresholds. `stampede scenario check FILE` validates it."
	root["required"] = []string{"name"}
	return json.MarshalIndent(root, "", "  ")
}

type schema = map[string]any

func enumSchema[T ~string](l []T) schema {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = string(v)
	}
	return schema{"type": "string", "enum": out}
}

func schemaOf(t reflect.Type) schema {
	switch t {
	case reflect.TypeFor[Duration]():
		return schema{"anyOf": []schema{{"type": "string", "pattern": durationPattern}, {"const": 0}}}
	case reflect.TypeFor[Bitrate]():
		return schema{"type": []string{"string", "integer"}, "pattern": bitratePattern}
	case reflect.TypeFor[ByteSize]():
		return schema{"type": []string{"string", "integer"}, "pattern": sizePattern}
	case reflect.TypeFor[Rate]():
		return schema{"type": []string{"string", "number"}, "pattern": ratePattern}
	case reflect.TypeFor[Threshold]():
		return schema{"type": "string", "pattern": thresholdPattern}
	case reflect.TypeFor[ArrivalKind]():
		return enumSchema(ArrivalKinds)
	case reflect.TypeFor[SessionKind]():
		return enumSchema(SessionKinds)
	case reflect.TypeFor[MirrorKind]():
		return enumSchema(MirrorKinds)
	case reflect.TypeFor[CounterStore]():
		return enumSchema(CounterStores)
	case reflect.TypeFor[RestartPolicy]():
		return enumSchema(RestartPolicies)
	case reflect.TypeFor[MirrorChoice]():
		return enumSchema(MirrorChoices)
	case reflect.TypeFor[FaultAction]():
		return enumSchema(FaultActions)
	case reflect.TypeFor[Flags]():
		return schema{"type": "object", "additionalProperties": schema{"type": []string{"string", "number", "boolean"}}}
	}
	switch t.Kind() {
	case reflect.Struct:
		props := schema{}
		var walk func(t reflect.Type)
		walk = func(t reflect.Type) {
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "-" || !f.IsExported() {
					continue
				}
				if opts == "inline" {
					walk(f.Type)
					continue
				}
				props[name] = schemaOf(f.Type)
			}
		}
		walk(t)
		return schema{"type": "object", "additionalProperties": false, "properties": props}
	case reflect.Slice:
		return schema{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.String:
		return schema{"type": "string"}
	case reflect.Bool:
		return schema{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return schema{"type": "integer"}
	case reflect.Float64:
		return schema{"type": "number"}
	}
	panic("scenarios: no schema for " + t.String())
}
