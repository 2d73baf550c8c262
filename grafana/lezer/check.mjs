// Parse TraceQL queries with Grafana's TraceQL grammar; report where each has syntax errors.
// stdin: a JSON list of queries. stdout: a JSON list of {query, errors: [offsets]}.
import { readFileSync } from "node:fs";
import { parser } from "@grafana/lezer-traceql";

const queries = JSON.parse(readFileSync(0, "utf8"));
const results = queries.map((query) => {
  const errors = [];
  parser.parse(query).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
    },
  });
  return { query, errors };
});
process.stdout.write(JSON.stringify(results));
