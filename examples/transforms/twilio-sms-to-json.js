// A Twilio SMS webhook (a form post) as JSON. The form's fields arrive parsed
// in request.body; returning an object body sends it as application/json.
function transform(request, context) {
  const f = request.body;
  request.body = {
    sid: f.MessageSid,
    from: f.From,
    to: f.To,
    text: f.Body,
    media: Number(f.NumMedia || 0),
    from_city: f.FromCity || null,
  };
  return request;
}
