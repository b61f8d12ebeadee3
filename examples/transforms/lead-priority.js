// Outbound: enrich a lead published through the API with a computed priority
// before it goes to the CRM.
function transform(request, context) {
  const lead = request.body;
  const free = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"];
  const domain = String(lead.email || "").split("@")[1] || "";
  let priority = "low";
  if (Number(lead.budget) >= 10000) {
    priority = "high";
  } else if (domain && !free.includes(domain.toLowerCase())) {
    priority = "normal";
  }
  lead.priority = priority;
  request.headers["x-lead-priority"] = priority;
  return request;
}
