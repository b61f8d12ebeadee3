// A Telegram update (message or edited message) as the chat message an app
// wants: {chat_id, user, text}. Updates without text (stickers, joins) are dropped.
function transform(request, context) {
  const m = request.body.message || request.body.edited_message;
  if (!m || typeof m.text !== "string") {
    return null;
  }
  const from = m.from || {};
  request.body = {
    chat_id: m.chat.id,
    user: from.username || [from.first_name, from.last_name].filter(Boolean).join(" "),
    text: m.text,
  };
  return request;
}
