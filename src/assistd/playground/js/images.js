// Images in messages. A composer's tray holds the images to send with the next message (picked with its
// "Attach image" button or pasted into its message box), each removable; on send they are uploaded with
// purpose "vision" (once: a failed send keeps them, uploaded, for the next try). Shown parts: a file's image
// is fetched with the API key (an <img src> cannot send it) and shown from a blob URL; a data: URL as it is;
// an http(s) URL only as a link (the browser does not fetch what the server decides whether to fetch).
import { clear, h } from "./dom.js";

export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];

const blobs = new Map(); // file id -> Promise of a blob URL of its content

/** An <img> of a stored file, loaded with the API key; a line saying why when it cannot be read. */
export function fileImage(api, fileId) {
  const img = h("img", { class: "output-image", alt: `image ${fileId}`, dataset: { fileId } });
  if (!blobs.has(fileId)) {
    blobs.set(fileId, api.blobUrl(fileId).catch((err) => {
      blobs.delete(fileId); // try again next time
      throw err;
    }));
  }
  blobs.get(fileId).then((url) => { img.src = url; },
    (err) => img.replaceWith(h("p", { class: "error-text small" }, `image ${fileId}: ${err.message}`)));
  return img;
}

/** A data: URL as an <img>; any other URL as a link to it. */
export function urlImage(url) {
  if (/^data:image\//i.test(url)) return h("img", { class: "output-image", src: url, alt: "image" });
  return h("a", { class: "image-link", href: url, target: "_blank", rel: "noopener noreferrer" }, `image ${url}`);
}

/** The view of an image_file, image_url (Assistants) or input_image (Responses) content part. */
export function imagePart(api, part) {
  if (part.type === "image_file") return fileImage(api, part.image_file.file_id);
  if (part.type === "image_url") return urlImage(part.image_url.url);
  return part.file_id ? fileImage(api, part.file_id) : urlImage(part.image_url ?? "");
}

export class ImageTray {
  /** `input`: the message box (pasting an image adds it); `button` opens `picker`; `tray` shows them. */
  constructor(api, notify, { input, button, picker, tray }) {
    this.api = api;
    this.notify = notify;
    this.tray = tray;
    this.pending = []; // {file, url (a preview blob URL), fileId (once uploaded)}
    button.addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => {
      this.add(picker.files);
      picker.value = "";
    });
    input.addEventListener("paste", (e) => {
      const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith("image/"));
      if (!files.length) return;
      if (!e.clipboardData.types.includes("text/plain")) e.preventDefault();
      this.add(files);
    });
    this.render();
  }

  get size() { return this.pending.length; }

  add(files) {
    for (const file of files) {
      if (!IMAGE_TYPES.includes(file.type)) {
        const what = file.type || "not an image";
        this.notify(`${file.name || "The file"} is ${what}: attach a png, jpeg, gif or webp image.`, true);
        continue;
      }
      this.pending.push({ file, url: URL.createObjectURL(file), fileId: null });
    }
    this.render();
  }

  remove(entry) {
    URL.revokeObjectURL(entry.url);
    this.pending = this.pending.filter((e) => e !== entry);
    this.render();
  }

  clear() {
    for (const entry of this.pending) URL.revokeObjectURL(entry.url);
    this.pending = [];
    this.render();
  }

  /** Uploads those not uploaded yet (purpose vision); the file ids of all, in order. */
  async upload() {
    for (const entry of this.pending) {
      if (entry.fileId) continue;
      this.notify(`Uploading ${entry.file.name}…`);
      entry.fileId = (await this.api.upload(entry.file, "vision")).id;
    }
    return this.pending.map((e) => e.fileId);
  }

  render() {
    const tray = clear(this.tray);
    tray.hidden = !this.pending.length;
    for (const entry of this.pending) {
      const name = entry.file.name || "image";
      tray.append(h("figure", { class: "pending-image", title: name },
        h("img", { src: entry.url, alt: name }),
        h("button", {
          type: "button", class: "remove-image", "aria-label": `Remove ${name}`, onclick: () => this.remove(entry),
        }, "×")));
    }
  }
}
