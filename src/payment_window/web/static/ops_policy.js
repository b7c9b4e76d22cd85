// The operations page's maker policy form: read a maker's policy, change it, save it with the
// admin's PUT. The API validates; this module only fills the form and reports the answer.

const $ = (id) => document.getElementById(id);

const CHOICES = {
  relist: 'relist the auction',
  notify_maker: 'ask the maker to review it',
  offer_next_bidder: 'offer it to the next bidder',
};

export function mountPolicy({ request, refused }) {
  const lookup = $('policy-lookup');
  const form = $('policy-form');
  const makerInput = $('policy-maker');
  const message = $('policy-message');
  let makerId = null;

  function say(text, kind = 'info') {
    message.textContent = text;
    message.dataset.kind = kind;
  }

  function fill(policy) {
    $('policy-max').value = String(policy.maxExtensionMinutes);
    $('policy-override').checked = policy.makersMayOverride;
    for (const radio of form.elements.onExpiry) radio.checked = radio.value === policy.onExpiry;
  }

  function describe(policy) {
    return `${policy.maxExtensionMinutes} minutes of extension, ` +
      `${policy.makersMayOverride ? 'the maker may' : 'only admins may'} extend or terminate, ` +
      `an unpaid window will ${CHOICES[policy.onExpiry]}.`;
  }

  lookup.addEventListener('submit', async (event) => {
    event.preventDefault();
    const wanted = makerInput.value.trim();
    if (!wanted) return;
    const { status, body } = await request(`/makers/${encodeURIComponent(wanted)}/policy`);
    if (status === 401 || status === 403) {
      refused(status, body);
      return;
    }
    if (status !== 200) {
      form.hidden = true;
      say(body?.error?.message ?? `The server answered HTTP ${status}.`, 'error');
      return;
    }
    makerId = wanted;
    fill(body);
    form.hidden = false;
    say(`Maker ${makerId}: ${describe(body)}`);
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const policy = {
      maxExtensionMinutes: Number($('policy-max').value),
      makersMayOverride: $('policy-override').checked,
      onExpiry: form.elements.onExpiry.value,
    };
    const { status, body } = await request(`/makers/${encodeURIComponent(makerId)}/policy`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(policy),
    });
    if (status === 401 || status === 403) {
      refused(status, body);
      return;
    }
    if (status !== 200) {
      say(`Not saved: ${body?.error?.message ?? `the server answered HTTP ${status}.`}`, 'error');
      return;
    }
    fill(body);
    say(`Saved for maker ${makerId}: ${describe(body)}`);
  });
}
