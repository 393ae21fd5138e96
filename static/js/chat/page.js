// The page's data, from the server through json_script (never as HTML): models and their prices, the
// conversation shown (its id is set here once a new chat is stored), URLs and the CSRF token.
export const data = JSON.parse(document.getElementById("chat-data").textContent);

export function modelInfo(id) {
  return data.models.find((model) => model.id === id) || null;
}
