// Validates ServiceMonitor objects (a JSON array in the file named by argv[2]) against the
// prometheus-operator CRD schema, through the validators that @kubernetes-models/prometheus-operator
// generates from the CRD's openAPIV3Schema. Prints one line per object; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0;
for (const obj of objects) {
  const name = obj?.metadata?.name ?? "(unnamed)";
  try {
    new ServiceMonitor(obj).validate();
    console.log(`valid ServiceMonitor ${name}`);
  } catch (e) {
    bad++;
    console.log(`INVALID ServiceMonitor ${name}: ${e.message}`);
  }
}
process.exit(bad ? 1 : 0);
