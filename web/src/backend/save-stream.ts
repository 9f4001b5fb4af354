/**
 * Saves a stream the browser makes (the results zip on aws) as a download, without holding it
 * in the page where the browser allows:
 * - File System Access API (Chromium-based browsers): the researcher picks the file first (the
 *   picker needs the click's user activation, so it opens before anything is fetched), then the
 *   stream is piped into it chunk by chunk. The browser writes to a temporary file and only
 *   puts it in place when the stream ends: a failed or cancelled download leaves no half zip.
 * - Elsewhere (Firefox, Safari): the stream is collected into a Blob (a Blob from a stream; the
 *   browser may keep it on disk, Chromium does for large ones, others may hold it in memory) and
 *   downloaded through an object URL.
 */

/** What `showSaveFilePicker` gives back, as far as this file uses it. */
interface SaveHandle {
  createWritable(): Promise<WritableStream<Uint8Array>>;
}
type SavePicker = (options: { suggestedName: string; types?: { description: string; accept: Record<string, string[]> }[] }) => Promise<SaveHandle>;

/** How the download went: written to the picked file, handed to the browser as a Blob, or the picker was cancelled. */
export type SaveOutcome = 'file' | 'blob' | 'cancelled';

/** How long an object URL stays valid after its download started, ms (the browser has read it by then). */
const OBJECT_URL_MS = 60_000;

/**
 * Downloads what `open()` streams as `fileName` (of `mimeType`). Call it straight from the
 * click handler: the save picker must open before the first await on anything else.
 */
export async function saveStream(fileName: string, mimeType: string, open: () => Promise<ReadableStream<Uint8Array>>, scope: Window = window): Promise<SaveOutcome> {
  const picker = (scope as unknown as { showSaveFilePicker?: SavePicker }).showSaveFilePicker;
  if (typeof picker === 'function') {
    let handle: SaveHandle;
    try {
      const extension = /\.[A-Za-z0-9]+$/.exec(fileName)?.[0];
      handle = await picker.call(scope, { suggestedName: fileName, ...(extension ? { types: [{ description: fileName, accept: { [mimeType]: [extension] } }] } : {}) });
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') return 'cancelled';
      throw error;
    }
    const writable = await handle.createWritable();
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = await open();
    } catch (error) {
      await writable.abort(error).catch(() => undefined);
      throw error;
    }
    // pipeTo closes the file at the end and aborts it (discarding the temporary file) on an error.
    await stream.pipeTo(writable);
    return 'file';
  }
  // Response.blob(), not arrayBuffer(): the browser decides where the Blob's bytes live.
  const blob = new Blob([await new Response(await open()).blob()], { type: mimeType });
  const url = URL.createObjectURL(blob);
  const a = scope.document.createElement('a');
  a.href = url;
  a.download = fileName;
  scope.document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), OBJECT_URL_MS);
  return 'blob';
}
