// A respond.io "message.received" event as a lead for a CRM.
function transform(request, context) {
  const e = request.body;
  if (e.event_type !== "message.received") {
    return null;
  }
  const msg = (e.message && e.message.message) || {};
  request.body = {
    contact_id: e.contact.id,
    channel: "respond.io",
    first_message: msg.type === "text" ? msg.text : "(" + msg.type + ")",
    received_message_id: context.message_id,
  };
  request.event_type = "lead.created";
  return request;
}
